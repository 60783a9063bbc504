"""A local Ray cluster for the plugin's tests: a head without CPUs and two Corral worker nodes ("a",
"b"), every one on 127.0.0.1 with 1 CPU, Ray's files under a short temporary folder; one cluster per test
module (starting one takes seconds). Tests skip when Ray or the llama.cpp plugin is not installed."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from corral import hookimpl

#: Fast failure detection for the fault tests (Ray's defaults take about half a minute).
SYSTEM_CONFIG = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                 "health_check_timeout_ms": 1000}
TINY_SETTINGS = {"n_ctx": 256, "threads": 1, "threads_batch": 1}


class LocalCluster:
    """The running cluster: its Ray ``Cluster``, its worker nodes by name, and the folders each node's
    agent serves model files from (``shared`` is served by both)."""

    def __init__(self, root: Path) -> None:
        from ray.cluster_utils import Cluster

        self.root = root
        # "elsewhere" is served by no node.
        self.folders = {n: root / "models" / n for n in ("shared", "a", "b", "elsewhere")}
        for folder in self.folders.values():
            folder.mkdir(parents=True)
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "_system_config": SYSTEM_CONFIG})
        self.nodes: dict = {}
        for name in ("a", "b"):
            self.add(name)

    def add(self, name: str) -> None:
        from corral_ray.nodes import node_resources

        self.nodes[name] = self.cluster.add_node(num_cpus=1, resources=node_resources(name),
                                                 node_ip_address="127.0.0.1")

    def agent(self, name: str, *, memory_limit: int | None = None):
        """(Re)start node ``name``'s agent as ``corral worker --models shared --models NAME`` would."""
        import ray

        from corral_ray.agent import find_agent, start_agent

        old = find_agent(name)
        if old is not None:
            ray.kill(old)
            while find_agent(name) is not None:
                time.sleep(0.05)
        return start_agent(name, roots=[self.folders["shared"], self.folders[name]], memory_limit=memory_limit)

    def kill(self, name: str) -> None:
        """Take node ``name`` away at once, as a machine that loses power."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)


@pytest.fixture(scope="module")
def cluster(monkeypatch_module):
    ray = pytest.importorskip("ray")
    root = Path(tempfile.mkdtemp(prefix="cr-", dir="/tmp"))  # short: Ray's socket paths must fit
    monkeypatch_module.setenv("RAY_TMPDIR", str(root / "ray"))
    (root / "ray").mkdir()
    # Every node is on 127.0.0.1; Ray would turn a loopback address into this machine's outside one.
    from ray._private import ray_constants

    monkeypatch_module.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    made = LocalCluster(root)
    try:
        from corral_ray.nodes import NAMESPACE

        ray.init(address=made.cluster.address, namespace=NAMESPACE, log_to_driver=False)
        for name in ("a", "b"):
            made.agent(name)
        yield made
    finally:
        ray.shutdown()
        made.cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


class to_a_plugin:  # noqa: N801 - a namespace registered as a plugin
    """``place_model``: models whose name starts with "to-a" go to node a."""

    @staticmethod
    @hookimpl
    def place_model(model, settings, candidates):
        if model.name.startswith("to-a"):
            return next((c for c in candidates if c.node == "a"), None)
        return None


@pytest.fixture(scope="module")
def host():
    pytest.importorskip("ray")
    llamacpp = pytest.importorskip("corral_llamacpp")
    import corral_ray
    from corral.testing import build_host, set_host

    plugins = [llamacpp, corral_ray, to_a_plugin]
    for optional in ("corral_webui", "corral_llama_server"):  # the UI's runtime page shows the node too;
        try:  # llama-server serves the tiny embedding GGUF (a second load group on a node)
            plugins.append(__import__(optional))
        except ImportError:
            pass
    built = build_host(entry_points=False, plugins=plugins)
    set_host(built)
    yield built
    set_host(None)


@pytest.fixture(scope="module")
def library(tmp_path_factory, host):
    from corral.testing import open_library

    lib = open_library(tmp_path_factory.mktemp("corral-home"), host)
    yield lib
    lib.store.close()


@pytest.fixture(scope="module")
def tiny(cluster, library):
    """Tiny random-weight GGUF chat models: "one", "two" and "to-a" in the folder both nodes serve,
    "only-b" in node b's own folder, "nowhere" in a folder no node serves."""
    from corral.testing import write_tiny_gguf

    made = {}
    for name, folder, seed in (("one", "shared", 1), ("two", "shared", 2), ("only-b", "b", 3), ("to-a", "shared", 4),
                               ("nowhere", "elsewhere", 5)):
        path = write_tiny_gguf(cluster.folders[folder] / f"{name}.gguf", seed=seed)
        model = library.import_path(path, name=name).model
        made[name] = library.update_settings(model.id, TINY_SETTINGS)
    return made


@pytest.fixture(scope="module")
def executor(cluster, host):
    from corral_ray.executor import RayExecutor

    made = RayExecutor(host=host, answer_timeout=10.0, report_timeout=10.0)
    yield made
    made.close()


@pytest.fixture
def runtime(library, executor):
    """A runtime placing models on the cluster; everything it loaded is unloaded after the test."""
    from corral.testing import Runtime

    made = Runtime(library, executor=executor)
    yield made
    for entry in made.entries():
        made.unload(entry.model.id)
