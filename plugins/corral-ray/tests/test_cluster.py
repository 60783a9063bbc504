"""The ray executor on a local two-node cluster (conftest.py): placement by files, memory, the node
setting and place_model; two chat models on two nodes at once; the head's queue and 503 in front of
the actors; streaming through the actor; a version mismatch refused at join; a node killed mid-request;
a full node unloading its least recently used idle model; `corral worker` joining a third node with a
real `ray start` and leaving on Ctrl-C. The models are real llama.cpp loads (tiny random-weight GGUFs, the real Gemma for the fault test)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

pytest.importorskip("ray")
pytest.importorskip("corral_llamacpp")

from corral.api import Incompatible, InsufficientMemory, InvalidSetting, NotFound  # noqa: E402


def nodes_of(runtime):
    return {info.name: info.node for info in runtime.ps()}


def test_a_load_goes_to_a_node_that_holds_its_files(runtime, tiny):
    assert runtime.load("only-b").node == "b"  # its file is in b's folder only
    with pytest.raises(NotFound) as refused:
        runtime.load("nowhere")
    message = str(refused.value)
    assert message.startswith("no node can load nowhere: ")
    for node in ("a", "b"):
        assert f"{node} holds no copy of {tiny['nowhere'].path} (same path, size and sha256)" in message


def test_a_load_goes_where_the_memory_is_and_is_refused_with_the_best_nodes_numbers(runtime, tiny, cluster):
    try:
        cluster.agent("a", memory_limit=1024)  # corral worker --memory 1KiB: nothing fits on a
        assert runtime.load("one").node == "b"
        runtime.unload("one")
        cluster.agent("b", memory_limit=2048)
        with pytest.raises(InsufficientMemory, match=r"^one fits no node; the best, b: needs about .* GiB of memory "
                                                     r"but only 0\.00 GiB is free; "):
            runtime.load("one")
        assert runtime.load("one", force=True).node in ("a", "b")
    finally:
        cluster.agent("a")
        cluster.agent("b")


def test_a_full_node_unloads_its_least_recently_used_idle_model_of_another_kind(runtime, tiny, cluster, library):
    """Node a has room for one tiny model, b for none: loading the chat model "one" while an idle
    embedding model holds a unloads that one first; with a request running on it nothing is unloaded."""
    pytest.importorskip("corral_llama_server")
    from corral.api import estimate_memory
    from corral.testing import plan_load, write_tiny_gguf

    path = write_tiny_gguf(cluster.folders["shared"] / "vectors.gguf", pooling_type=1, seed=6)
    vectors = library.import_path(path, name="vectors").model
    library.update_settings(vectors.id, {"n_ctx": 256, "threads": 1, "threads_batch": 1, "parallel": 1})
    need = estimate_memory(tiny["one"], dict(plan_load(library, tiny["one"]).settings)).total_bytes
    try:
        assert runtime.load("vectors", settings={"node": "a"}).node == "a"
        cluster.agent("a", memory_limit=need + (1 << 20))  # one tiny model's room, taken by "vectors"
        cluster.agent("b", memory_limit=1024)
        entry, turn = runtime.enter("vectors")  # busy: it may not be unloaded
        try:
            with pytest.raises(InsufficientMemory, match=r"^one fits no node; the best, [ab]: needs about "):
                runtime.load("one")
        finally:
            turn.release()
        assert nodes_of(runtime) == {"vectors": "a"}
        assert runtime.load("one").node == "a"  # idle now: unloaded to make room
        assert nodes_of(runtime) == {"one": "a"}
    finally:
        cluster.agent("a")
        cluster.agent("b")


def test_the_node_setting_and_place_model_pin_a_model(runtime, tiny):
    assert runtime.load("to-a").node == "a"  # the test's place_model plugin
    runtime.unload("to-a")
    assert runtime.load("one", settings={"node": "b"}).node == "b"
    with pytest.raises(InvalidSetting, match=r"node 'c' .* is not available; nodes that can take it: a, b"):
        runtime.load("two", settings={"node": "c"})


@pytest.fixture
def server(runtime, monkeypatch):
    from corral.testing import ServerThread

    monkeypatch.setenv("CORRAL_HOME", str(runtime.library.store.path.parent))  # for `corral ps`
    with ServerThread(runtime, state=True) as running:
        yield running


def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)


def test_two_chat_models_answer_at_once_from_two_nodes(server, runtime, tiny):
    import httpx

    answers = {}

    def ask(name):
        answers[name] = client(server).completions.create(model=name, prompt="Hello", max_tokens=4)

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {name: a.model for name, a in answers.items()} == {"one": "one", "two": "two"}
    assert all(a.usage.completion_tokens >= 1 for a in answers.values())
    assert sorted(nodes_of(runtime).values()) == ["a", "b"]  # one chat model per node
    ps = httpx.get(server.url + "/corral/ps").json()
    assert {m["name"]: m["node"] for m in ps["models"]} == nodes_of(runtime)
    metrics = httpx.get(server.url + "/metrics").text
    for name, node in nodes_of(runtime).items():
        assert f'corral_model_node{{model="{name}",node="{node}"}} 1.0' in metrics
    from click.testing import CliRunner

    from corral.testing import build_cli

    table = CliRunner().invoke(build_cli(), ["ps"]).output.splitlines()
    assert table[1].split()[:3] == ["NAME", "NODE", "CATEGORY"]
    assert {tuple(line.split()[:2]) for line in table[2:]} == set(nodes_of(runtime).items())
    page = httpx.get(server.url + "/corral/ui/api/runtime")
    if page.status_code != 404:  # the web UI plugin is installed: its runtime page shows the node
        assert {m["name"]: m["node"] for m in page.json()["models"]} == nodes_of(runtime)


def test_a_stream_comes_through_the_actor(server, runtime, tiny):
    pieces = []
    stream = client(server).chat.completions.create(
        model="one", messages=[{"role": "user", "content": "Say something"}], max_tokens=12, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) >= 2 and "".join(pieces)
    assert nodes_of(runtime)["one"] in ("a", "b")


def test_the_heads_queue_holds_50_and_answers_503_after(server, runtime, tiny):
    from openai import APIStatusError

    runtime.load("one")
    entry, running = runtime.enter("one")  # the request in progress
    waiting = [runtime.enter("one")[1] for _ in range(49)]
    answered = {}
    fiftieth = threading.Thread(target=lambda: answered.setdefault(
        "reply", client(server).completions.create(model="one", prompt="Hi", max_tokens=2)))
    fiftieth.start()
    deadline = time.monotonic() + 30
    while entry.queue.waiting < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert entry.queue.waiting == 50
    with pytest.raises(APIStatusError) as refused:
        client(server).completions.create(model="one", prompt="Hi", max_tokens=2)
    assert refused.value.status_code == 503
    assert int(refused.value.response.headers["retry-after"]) >= 1
    for turn in [running, *waiting]:
        turn.wait(5)
        turn.release()
    fiftieth.join(60)
    assert answered["reply"].usage.completion_tokens >= 1  # the one that waited was served by the actor


def test_a_worker_with_other_versions_is_refused_when_it_joins(cluster, executor, monkeypatch):
    from click.testing import CliRunner

    import corral_ray.command as command
    import corral_ray.nodes as nodes
    from corral.testing import build_cli

    started = []
    monkeypatch.setattr(command.subprocess, "Popen", lambda *a, **k: started.append(a))
    other = {**nodes.local_versions(), "corral": "9.9.9"}
    monkeypatch.setattr(nodes, "local_versions", lambda: other)
    result = CliRunner().invoke(build_cli(), ["worker", "--address", cluster.cluster.address, "--name", "c"])
    assert result.exit_code == Incompatible.exit_code
    assert result.output.strip().splitlines()[-1].endswith(
        f"cannot join {cluster.cluster.address}: this node runs corral 9.9.9 but the head runs corral "
        f"{executor.versions['corral']}: install the head's versions on this node")
    assert started == []  # refused before `ray start`
    monkeypatch.setattr(nodes, "local_versions", lambda: executor.versions)
    taken = CliRunner().invoke(build_cli(), ["worker", "--address", cluster.cluster.address, "--name", "a"])
    assert taken.exit_code == InvalidSetting.exit_code
    assert "a node named 'a' is in the cluster already; give another --name" in taken.output
    assert started == []


def test_a_node_killed_mid_request_fails_it_with_503_and_the_next_is_served_elsewhere(
        server, runtime, cluster, library, gemma_path, executor):
    from openai import APIStatusError

    copy = cluster.folders["shared"] / gemma_path.name
    try:
        os.link(gemma_path, copy)
    except OSError:
        shutil.copyfile(gemma_path, copy)
    gemma = library.import_path(copy, name="gemma").model
    library.update_settings(gemma.id, {"n_ctx": 512, "threads": 1, "threads_batch": 1})
    first = runtime.load("gemma").node
    other = ({"a", "b"} - {first}).pop()
    failed = {}

    def long_request():
        try:
            client(server).completions.create(model="gemma", prompt="1, 2, 3, 4, 5, 6,", max_tokens=400,
                                              temperature=0)
        except APIStatusError as exc:
            failed["error"] = exc

    request = threading.Thread(target=long_request)
    request.start()
    entry = runtime.find("gemma")
    deadline = time.monotonic() + 60
    while entry.queue.running < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # generating now
    killed_at = time.monotonic()
    cluster.kill(first)
    request.join(60)
    assert not request.is_alive()
    error = failed["error"]
    assert error.status_code == 503 and int(error.response.headers["retry-after"]) >= 1
    assert f"node {first}" in error.message
    failed_after = time.monotonic() - killed_at
    while "gemma" in nodes_of(runtime) and time.monotonic() < killed_at + 10:
        time.sleep(0.1)
    assert "gemma" not in nodes_of(runtime)  # dropped from ps
    while first in executor.node_names() and time.monotonic() < killed_at + 15:
        time.sleep(0.2)
    assert executor.node_names() == [other]
    reply = client(server).completions.create(model="gemma", prompt="Hello", max_tokens=3)
    assert reply.usage.completion_tokens >= 1
    assert nodes_of(runtime)["gemma"] == other
    print(f"the request failed {failed_after:.1f} s after its node was killed")


def test_corral_worker_joins_a_real_node_that_takes_a_model_and_leaves_on_ctrl_c(runtime, tiny, cluster, executor):
    """`corral worker` as a user runs it: `ray start` joins a third node "c" with Corral's resources, its
    agent reports, a model pinned to it loads there; Ctrl-C takes the node out of the cluster."""
    import signal
    import subprocess
    import sys

    # `ray start` turns 127.0.0.1 in --address into this machine's outside address (right across machines);
    # here every node is on loopback, so the worker's processes keep the address as given.
    keep = cluster.root / "keep-loopback"
    keep.mkdir(exist_ok=True)
    (keep / "sitecustomize.py").write_text(
        "import ray._private.services as services\nservices.resolve_ip_for_localhost = lambda host: host\n")
    address = cluster.cluster.address
    before = executor.node_names()
    env = {**os.environ, "RAY_TMPDIR": str(cluster.root / "ray"),
           "PYTHONPATH": os.pathsep.join([str(keep), *filter(None, [os.environ.get("PYTHONPATH")])])}
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "--address", address, "--name", "c",
         "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--models", str(cluster.folders["shared"])],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "c" not in executor.node_names() or runtime.executor.reports([], [])[1]:
            assert worker.poll() is None, worker.stderr.read()
            if time.monotonic() > deadline:
                worker.terminate()
                raise AssertionError(f"node c did not join with its agent: nodes {executor.node_names()}, "
                                     f"{runtime.executor.reports([], [])[1]}; {worker.communicate(timeout=60)[1]}")
            time.sleep(0.5)
        assert runtime.load("one", settings={"node": "c"}).node == "c"
        reply = runtime.call("one", "complete", "Hello", max_tokens=2)
        assert reply.completion_tokens >= 1
        runtime.unload("one")
        os.killpg(worker.pid, signal.SIGINT)  # Ctrl-C in its terminal
        assert worker.wait(60) == 0
        assert "joined" in worker.stderr.read()
        deadline = time.monotonic() + 30
        while "c" in executor.node_names() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert executor.node_names() == before
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
