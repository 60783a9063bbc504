"""What needs no cluster: node names and resources, the version check's verdicts, the worker's ray start
line, and that registering the plugin imports no Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("ray")

from corral_ray.nodes import check_name, node_name, node_resources, version_problem  # noqa: E402

HEAD = {"ray": "2.60.0", "python": "3.11", "corral": "0.1.0",
        "plugins": {"corral-ray": "0.1.0", "corral-llamacpp": "0.1.0"}}


def test_a_node_is_named_by_its_own_resource():
    resources = {"CPU": 1.0, **node_resources("gpu-box")}
    assert node_name(resources) == "gpu-box"
    assert node_name({"CPU": 1.0, "corral-node:x": 1.0}) is None  # no corral resource: not a worker
    assert check_name("gpu-box.1") == "gpu-box.1"
    with pytest.raises(ValueError, match="cannot name a node"):
        check_name("a b")


def test_versions_must_match_except_plugins_on_one_side_only():
    assert version_problem(HEAD, {**HEAD, "plugins": {"corral-ray": "0.1.0"}}) is None
    assert version_problem(HEAD, {**HEAD, "ray": "2.9.0", "python": "3.10"}) == (
        "this node runs Ray 2.9.0, Python 3.10 but the head runs Ray 2.60.0, Python 3.11: install the head's "
        "versions on this node")
    assert version_problem(HEAD, {**HEAD, "plugins": {"corral-llamacpp": "0.2.0"}}) == (
        "this node runs corral-llamacpp 0.2.0 but the head runs corral-llamacpp 0.1.0: install the head's "
        "versions on this node")


def test_the_worker_starts_ray_with_corrals_resources_in_the_foreground():
    from corral_ray.command import ray_start_command

    command = ray_start_command("10.0.0.1:6379", "box", node_ip="10.0.0.2", num_cpus=4, num_gpus=None)
    assert command[1:] == ["start", "--address", "10.0.0.1:6379", "--resources",
                           '{"corral": 1.0, "corral-node:box": 1.0}', "--block", "--node-ip-address", "10.0.0.2",
                           "--num-cpus", "4"]


def test_registering_the_plugin_imports_no_ray():
    code = ("import sys, corral_ray; from click import Group; g = Group(); corral_ray.register_commands(g); "
            "corral_ray.register_executors(lambda spec: None); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
