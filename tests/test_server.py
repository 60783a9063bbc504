"""The HTTP server end to end over real sockets: the `openai` client against `corral serve` with the real
llama.cpp and sentence-transformers plugins, the overload behaviour, API keys, errors, management
routes, and the CLI commands that talk to the server."""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.runtime import Runtime
from corral.server.serve import ServerThread
from corral.server.state import read_state, state_path
from test_runtime import WAIT, in_thread, lib, models, probe, probe_host  # noqa: F401 - fixtures
import test_runtime

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"


def probe_state():
    return test_runtime.PROBE


@pytest.fixture
def runtime(lib):  # noqa: F811
    rt = Runtime(lib, drain_timeout=WAIT)
    yield rt
    probe_state().gate.set()
    rt.close()


@pytest.fixture
def server(runtime, models):  # noqa: F811
    with ServerThread(runtime, state=True) as srv:
        yield srv


@pytest.fixture
def run(probe_host):  # noqa: F811 - the CLI with the test drivers' plugin host
    from click.testing import CliRunner

    from corral.cli import build_cli

    def invoke(*args):
        return CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)

    return invoke


def say(model: str, content: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.01)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"]), body
    return body["error"]


# --- the openai client against the server (test drivers) ---------------------------------------------


def test_openai_client_models_chat_stream_completions_embeddings(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    listed = {m.id: m for m in client.models.list()}
    assert set(listed) == {"a", "b", "e", "m", "r", "t"}
    answer = client.chat.completions.create(model="a", messages=[{"role": "user", "content": "hello"}])
    assert answer.choices[0].message.content == "a heard hello"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens == 3 and answer.usage.completion_tokens == 3
    chunks = list(client.chat.completions.create(
        model="a", messages=[{"role": "user", "content": "one two"}], stream=True,
        stream_options={"include_usage": True},
    ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a heard one two "
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 4
    completion = client.completions.create(model="a", prompt="Once")
    assert completion.choices[0].text == "Once and so on"
    vectors = client.embeddings.create(model="e", input=["four", "seven"])  # base64 on the wire
    assert [d.embedding for d in vectors.data] == [[4.0, 1.0, 0.5], [5.0, 1.0, 0.5]]
    floats = client.embeddings.create(model="e", input="x", encoding_format="float")
    assert floats.data[0].embedding == [1.0, 1.0, 0.5]
    assert client.models.retrieve("a").id == "a"


# --- overload ---------------------------------------------------------------------------------------------


def test_overload_200_requests_one_model(server, runtime):
    probe_state().gate.clear()

    async def flood():
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=WAIT * 4) as client:
            first = asyncio.create_task(client.post(CHAT, json=say("a", "0")))
            await asyncio.to_thread(probe_state().entered.wait, WAIT)
            rest = [asyncio.create_task(client.post(CHAT, json=say("a", str(i)))) for i in range(1, 200)]
            entry = runtime.find("a")
            deadline = time.monotonic() + WAIT * 2
            while not (sum(t.done() for t in rest) == 149 and entry.queue.waiting == 50):
                assert time.monotonic() < deadline, "the flood did not settle into 1 running + 50 waiting"
                await asyncio.sleep(0.02)
            # Refused requests were answered while the model was still busy: never a hang.
            assert entry.queue.busy and probe_state().running == 1
            probe_state().gate.set()
            return await asyncio.gather(first, *rest)

    responses = asyncio.run(flood())
    by_status = collections.Counter(r.status_code for r in responses)
    assert by_status == {200: 51, 503: 149}
    served = sorted(int(r.json()["choices"][0]["message"]["content"].split()[-1]) for r in responses
                    if r.status_code == 200)
    assert served[0] == 0 and len(set(served)) == 51
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["Retry-After"]) >= 1
        assert error_of(refused)["code"] == "queue_full"
    assert probe_state().most_running == 1
    # Alive and answering afterwards.
    assert httpx.get(server.url + "/v1/models", timeout=WAIT).status_code == 200
    after = httpx.post(server.url + CHAT, json=say("a", "still there?"), timeout=WAIT)
    assert after.json()["choices"][0]["message"]["content"] == "a heard still there?"
    queue = httpx.get(server.url + "/corral/status", timeout=WAIT).json()["queues"]["a"]
    assert (queue["served"], queue["rejected"], queue["waiting"]) == (52, 149, 0)


def test_a_stream_holds_its_model_until_it_ends(server, runtime):
    probe_state().mid_gate.clear()
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        with client.stream("POST", CHAT, json=say("a", "x y", stream=True)) as stream:
            lines = stream.iter_lines()
            first = next(l for l in lines if l.startswith("data:"))
            assert json.loads(first[5:])["choices"][0]["delta"]["content"] == "a "
            waiting = in_thread(httpx.post, server.url + CHAT, json=say("a", "next"), timeout=WAIT)
            wait_until(lambda: runtime.find("a").queue.waiting == 1, "the second request to queue")
            assert client.get("/corral/ps").json()["models"][0]["busy"] is True
            probe_state().mid_gate.set()
            rest = [l for l in lines if l.startswith("data:")]
        assert rest[-1] == "data: [DONE]"
    waiting[0].join(WAIT)
    assert waiting[1]["value"].json()["choices"][0]["message"]["content"] == "a heard next"


def test_a_client_that_leaves_mid_stream_frees_the_model(server, runtime):
    words = " ".join(f"w{i}" for i in range(300))
    with httpx.Client(base_url=server.url, timeout=WAIT) as client:
        with client.stream("POST", CHAT, json=say("a", words, stream=True)) as stream:
            next(stream.iter_lines())
    wait_until(lambda: runtime.find("a").queue.idle, "the model to be released")
    assert httpx.post(server.url + CHAT, json=say("a", "after"), timeout=WAIT).status_code == 200


# --- errors ------------------------------------------------------------------------------------------------


def test_errors_are_openai_shaped_with_the_right_status(server):
    post = lambda path, **kw: httpx.post(server.url + path, timeout=WAIT, **kw)  # noqa: E731
    missing = post(CHAT, json=say("zzz", "hi"))
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found" and "no model 'zzz'" in error_of(missing)["message"]
    bad_json = post(CHAT, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in error_of(bad_json)["message"]
    no_messages = post(CHAT, json={"model": "a"})
    assert no_messages.status_code == 400 and "'messages'" in error_of(no_messages)["message"]
    wrong_type = post(CHAT, json=say("a", "hi", temperature="hot"))
    assert wrong_type.status_code == 400 and "temperature" in error_of(wrong_type)["message"]
    not_chat = post(CHAT, json=say("e", "hi"))
    assert not_chat.status_code == 400 and "embedding model" in error_of(not_chat)["message"]
    speech = post("/v1/audio/speech", json={"model": "kokoro", "input": "hi"})
    assert speech.status_code == 501
    assert error_of(speech)["install"] == "pip install corral-kokoro"
    assert "speech synthesis needs the corral-kokoro plugin" in error_of(speech)["message"]
    image = post("/v1/images/generations", json={"model": "sd", "prompt": "a cat"})
    assert image.status_code == 501 and "corral-diffusers" in error_of(image)["message"]
    bug = post(CHAT, json=say("a", "please crash"))
    assert bug.status_code == 500 and "a bug in the driver" in error_of(bug)["message"]
    assert post(CHAT, json=say("a", "fine")).status_code == 200  # the server goes on
    nowhere = httpx.get(server.url + "/v2/nothing", timeout=WAIT)
    assert nowhere.status_code == 404 and error_of(nowhere)["code"] == "not_found"


def test_models_without_an_installed_plugin_are_not_listed(server, lib, tmp_path):  # noqa: F811
    from factories import write_tiny_gguf

    from corral.records import Category

    lib.import_path(write_tiny_gguf(tmp_path / "x.gguf"), name="pictures", category=Category.IMAGE)
    ids = {m["id"] for m in httpx.get(server.url + "/v1/models", timeout=WAIT).json()["data"]}
    assert "pictures" not in ids and "a" in ids


# --- other OpenAI-compatible routes -------------------------------------------------------------------------


def test_rerank_completions_and_embeddings_shapes(server):
    post = lambda path, body: httpx.post(server.url + path, json=body, timeout=WAIT)  # noqa: E731
    ranked = post("/v1/rerank", {"model": "r", "query": "red apple", "top_n": 2, "return_documents": True,
                                 "documents": ["blue sky", {"text": "red apple pie"}, "an apple"]}).json()
    assert [r["index"] for r in ranked["results"]] == [1, 2]
    assert ranked["results"][0] == {"index": 1, "relevance_score": 2.0, "document": {"text": "red apple pie"}}
    many = post("/v1/completions", {"model": "a", "prompt": ["x", "y"], "echo": True}).json()
    assert [c["text"] for c in many["choices"]] == ["xx and so on", "yy and so on"]
    encoded = post("/v1/embeddings", {"model": "e", "input": "abc", "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (3.0, 1.0, 0.5)
    tokens = post("/v1/embeddings", {"model": "e", "input": [[1, 2, 3]]})
    assert tokens.status_code == 400 and "token arrays" in error_of(tokens)["message"]


# --- management -------------------------------------------------------------------------------------------


def test_load_ps_status_unload(server, runtime):
    post = lambda path, body: httpx.post(server.url + path, json=body, timeout=WAIT)  # noqa: E731
    loaded = post("/corral/load", {"model": "a", "settings": {"n_ctx": 128}, "keep_alive": "10m"}).json()
    assert loaded["reused"] is False and loaded["model"]["settings"] == {"n_ctx": 128}
    assert loaded["model"]["expires_in"] == pytest.approx(600, abs=5)
    assert post("/corral/load", {"model": "a", "settings": {"n_ctx": 128}}).json()["reused"] is True
    post("/corral/load", {"model": "e"})
    names = [m["name"] for m in httpx.get(server.url + "/corral/ps").json()["models"]]
    assert names == ["a", "e"]
    status = httpx.get(server.url + "/corral/status").json()
    assert status["server"]["pid"] == os.getpid() and status["server"]["max_waiting"] == 50
    assert status["system"]["memory_total_bytes"] > 0 and "cpu_percent" in status["system"]
    assert set(status["queues"]) == {"a", "e"}
    assert post("/corral/unload", {"category": "embedding"}).json() == {"unloaded": ["e"]}
    assert post("/corral/unload", {"all": True}).json() == {"unloaded": ["a"]}
    assert runtime.ps() == []
    refused = post("/corral/unload", {})
    assert refused.status_code == 400
    memory = post("/corral/load", {"model": "a", "settings": {"no_such": 1}})
    assert memory.status_code == 422 and error_of(memory)["code"] == "invalid_setting"


def test_stopping_the_server_unloads_everything(runtime, models, lib):  # noqa: F811
    with ServerThread(runtime) as srv:
        httpx.post(srv.url + "/corral/load", json={"model": "a"}, timeout=WAIT)
        httpx.post(srv.url + "/corral/load", json={"model": "e"}, timeout=WAIT)
        assert len(lib.store.loaded_ids()) == 2
    assert runtime.ps() == [] and lib.store.loaded_ids() == set()
    assert probe_state().count("unload") == 2


# --- API key ----------------------------------------------------------------------------------------------


ROUTES = [("GET", "/v1/models"), ("POST", CHAT), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
          ("POST", "/v1/rerank"), ("POST", "/v1/images/generations"), ("POST", "/v1/audio/speech"),
          ("POST", "/corral/load"), ("POST", "/corral/unload"), ("GET", "/corral/ps"), ("GET", "/corral/status"),
          ("GET", "/corral/health"), ("GET", "/no/such/route")]


def test_api_key_is_required_on_every_route(runtime, models):  # noqa: F811
    with ServerThread(runtime, api_key="s3cret") as srv, httpx.Client(base_url=srv.url, timeout=WAIT) as http:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                refused = http.request(method, path, json={}, headers=headers)
                assert refused.status_code == 401, (method, path, headers)
                assert error_of(refused)["type"] == "authentication_error"
        good = {"Authorization": "Bearer s3cret"}
        assert http.get("/v1/models", headers=good).status_code == 200
        answer = http.post(CHAT, json=say("a", "hi"), headers=good)
        assert answer.status_code == 200
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
        assert client.chat.completions.create(model="a", messages=[{"role": "user", "content": "k"}]).choices
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="nope", max_retries=0).models.list()


# --- `corral serve` as a process --------------------------------------------------------------------------


def start_serve(home: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, dict]:
    """`corral serve --port 0` in its own process (this environment without CORRAL_HOST, plus ``env``);
    returns it once its state file names it."""
    from corral.testing import serve_process

    environ = {**{k: v for k, v in os.environ.items() if k != "CORRAL_HOST"}, **(env or {})}
    log = home / "serve-test.log"
    log.unlink(missing_ok=True)
    process, state = serve_process(home, *args, env=environ, log=log)
    return process, {"url": state.url, "host": state.host, "pid": state.pid}


def stop_serve(process: subprocess.Popen, home: Path) -> str:
    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 0
    assert not state_path(home).exists()
    return (home / "serve-test.log").read_text()


def test_serve_binds_loopback_by_default_and_enforces_the_env_key(tmp_path):
    import psutil

    home = tmp_path / "home"
    home.mkdir()
    process, info = start_serve(home, env={"CORRAL_API_KEY": "k3y"})
    try:
        assert info["host"] == "127.0.0.1"
        listening = [c.laddr for c in psutil.Process(process.pid).net_connections() if c.status == "LISTEN"]
        assert [addr.ip for addr in listening] == ["127.0.0.1"]
        assert httpx.get(info["url"] + "/v1/models", timeout=WAIT).status_code == 401
        ok = httpx.get(info["url"] + "/v1/models", headers={"Authorization": "Bearer k3y"}, timeout=WAIT)
        assert ok.status_code == 200 and ok.json() == {"object": "list", "data": []}
        # A second server for the same library is refused with one clear line.
        second = subprocess.run([sys.executable, "-m", "corral", "serve", "--port", "0"], capture_output=True,
                                text=True, env={**os.environ, "CORRAL_HOME": str(home)}, timeout=120)
        assert second.returncode != 0 and "already runs for this library" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        stop_serve(process, home)


@pytest.fixture(scope="module")
def real_home(tmp_path_factory, gemma_path, minilm_path):
    """A library with the real Gemma GGUF (small context) and the real all-MiniLM-L6-v2."""
    pytest.importorskip("corral_llamacpp")
    pytest.importorskip("corral_sentence_transformers")
    home = tmp_path_factory.mktemp("served")
    env = {**os.environ, "CORRAL_HOME": str(home)}
    for args in (["import", gemma_path, "--name", "gemma"], ["settings", "gemma", "--n-ctx", "1024"],
                 ["import", minilm_path, "--name", "minilm"]):
        out = subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert out.returncode == 0, out.stderr
    return home


@pytest.mark.slow
def test_openai_client_against_corral_serve_with_real_models(real_home):
    process, info = start_serve(real_home)
    try:
        client = openai.OpenAI(base_url=info["url"] + "/v1", api_key="unused", max_retries=0, timeout=300)
        listed = {m.id: m for m in client.models.list()}
        assert {"gemma", "minilm"} <= set(listed)
        answer = client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0,
            seed=1,
        )
        assert answer.choices[0].message.role == "assistant" and answer.choices[0].message.content.strip()
        assert answer.usage.prompt_tokens > 0 and 0 < answer.usage.completion_tokens <= 12
        # The same request streamed: the same text, and the driver's own finish reason and token counts.
        stream = list(client.chat.completions.create(
            model="gemma", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12,
            temperature=0, seed=1, stream=True, stream_options={"include_usage": True},
        ))
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 1 and "".join(pieces) == answer.choices[0].message.content
        assert [c.choices[0].finish_reason for c in stream if c.choices][-1] == answer.choices[0].finish_reason
        assert stream[-1].usage.prompt_tokens == answer.usage.prompt_tokens
        assert stream[-1].usage.completion_tokens == answer.usage.completion_tokens
        plain = client.completions.create(model="gemma", prompt="The capital of France is", max_tokens=8,
                                          temperature=0)
        assert plain.choices[0].text.strip() and plain.usage.completion_tokens <= 8
        # Greedy decoding through HTTP gives what it gives in-process: same tokens, same text.
        again = client.completions.create(model="gemma", prompt="The capital of France is", max_tokens=8,
                                          temperature=0)
        assert again.choices[0].text == plain.choices[0].text
        vectors = client.embeddings.create(model="minilm", input=["a cat", "a kitten", "stock market"])
        dims = {len(d.embedding) for d in vectors.data}
        assert dims == {384}
        short = client.embeddings.create(model="minilm", input="a cat", dimensions=128)
        assert len(short.data[0].embedding) == 128 and short.data[0].embedding == vectors.data[0].embedding[:128]
        ps = httpx.get(info["url"] + "/corral/ps", timeout=WAIT).json()["models"]
        assert {m["name"] for m in ps} == {"gemma", "minilm"}  # chat and embedding coexist
        assert all(m["ram_bytes"] > 0 for m in ps)
    finally:
        log = stop_serve(process, real_home)
    assert "unloaded gemma" in log and "unloaded minilm" in log


@pytest.mark.slow
def test_cli_load_ps_chat_unload_through_a_background_server(real_home, tmp_path):
    from factories import write_tiny_gguf

    # The image plugin is kept out (of this CLI and the server it starts) to show the missing-plugin answer.
    env = {**os.environ, "CORRAL_HOME": str(real_home), "CORRAL_PORT": "0", "CORRAL_DISABLE_PLUGINS": "diffusers"}

    def corral(*args):
        return subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300)

    assert read_state(real_home) is None
    empty = corral("ps")
    assert empty.returncode == 0 and "No server is running" in empty.stdout, empty.stderr
    assert read_state(real_home) is None  # ps never starts a server
    loaded = corral("load", "gemma", "--n-ctx", "512")
    state = read_state(real_home)
    assert state is not None  # load started one in the background, still running
    try:
        assert loaded.returncode == 0 and "Loaded gemma (chat, llamacpp)" in loaded.stdout, loaded.stderr
        again = corral("load", "gemma", "--n-ctx", "512")
        assert "already loaded" in again.stdout
        table = corral("ps").stdout
        assert table.splitlines()[0].startswith(f"Server pid {state.pid} at ")
        assert table.splitlines()[1].split()[:3] == ["NAME", "CATEGORY", "DRIVER"] and "gemma" in table
        chat = corral("chat", "gemma", "Hello", "--max-tokens", "5", "--temperature", "0")
        assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
        served = json.loads(corral("ps", "--json").stdout)["models"][0]["served"]
        assert served == 1  # the chat ran in the server, on the loaded model
        removed = corral("rm", "gemma", "--yes")
        assert removed.returncode == 3 and "is loaded" in removed.stderr
        write_tiny_gguf(tmp_path / "pic.gguf")
        corral("import", tmp_path / "pic.gguf", "--name", "pic", "--category", "image")
        missing = corral("load", "pic")
        assert missing.returncode == 6 and "pip install corral-diffusers" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
        unloaded = corral("unload", "gemma")
        assert unloaded.returncode == 0 and "Unloaded gemma." in unloaded.stdout
        assert "No model is loaded." in corral("ps").stdout
    finally:
        os.kill(state.pid, signal.SIGTERM)
        wait_until(lambda: read_state(real_home) is None, "the background server to stop")


# --- CLI run commands use a running server ------------------------------------------------------------------


def test_chat_embed_rerank_go_to_the_running_server(server, runtime, run):
    chat = run("chat", "a", "hi there")
    assert chat.exit_code == 0 and chat.stdout == "a heard hi there \n"
    assert runtime.find("a").queue.served == 1  # answered by the server, not in this command
    embedded = run("embed", "e", "abcd", "--json")
    assert json.loads(embedded.stdout) == [[4.0, 1.0, 0.5]]
    ranked = run("rerank", "r", "red apple", "blue sky", "red apple pie", "--json")
    assert [d["index"] for d in json.loads(ranked.stdout)] == [1, 0]
    loaded = run("load", "b", "--json")
    assert json.loads(loaded.stdout)["model"]["name"] == "b"
    assert {m["name"] for m in json.loads(run("ps", "--json").stdout)["models"]} == {"b", "e", "r"}
    assert run("unload", "--all").stdout.count("Unloaded") == 3
    missing = run("chat", "zzz", "hi")
    assert missing.exit_code == 2 and "no model 'zzz'" in missing.stderr


def test_chat_runs_in_process_without_a_server(home, lib, models, run):  # noqa: F811
    assert read_state(home) is None
    chat = run("chat", "a", "alone")
    assert chat.exit_code == 0 and chat.stdout == "a heard alone \n"
    assert probe_state().events == [("load", "a"), ("unload", "a")]


def test_cli_sends_the_api_key_from_the_environment(runtime, models, run, monkeypatch):  # noqa: F811
    monkeypatch.delenv("CORRAL_API_KEY", raising=False)
    with ServerThread(runtime, api_key="s3cret", state=True):
        refused = run("ps")
        assert refused.exit_code == 1 and "requires an API key: set CORRAL_API_KEY" in refused.stderr
        monkeypatch.setenv("CORRAL_API_KEY", "s3cret")
        assert run("chat", "a", "keyed").stdout == "a heard keyed \n"
        assert [m["name"] for m in json.loads(run("ps", "--json").stdout)["models"]] == ["a"]


# --- images and speech (test drivers: no image or TTS backend is installed here) -----------------------------


class MediaHandle:
    """An image and speech model whose output encodes what it was asked, so a test can read it back."""

    def __init__(self, model):
        self.model = model

    def imagine(self, prompt, **params):
        from PIL import Image

        if "image" in params:  # image-to-image: the input arrives as a file
            with Image.open(params["image"]) as source:
                return [Image.new("RGB", source.size, (9, 9, 9))]
        size = (params.get("width", 8), params.get("height", 8))
        return [Image.new("RGB", size, (len(prompt), params.get("seed", 0) % 256, params.get("steps", 0)))]

    def speak(self, text, **params):
        return [0.0, 0.5, -0.5, 1.0, -1.0][: len(text) + 3], 24000 if params.get("voice") != "slow" else 8000

    def memory(self):
        return {"ram": 1}

    def unload(self):
        pass


def _media_plugin():
    from corral import hookimpl
    from corral.driver import Driver, LoadedModel
    from corral.records import Category, Format

    class Handle(MediaHandle, LoadedModel):
        def __init__(self, model, settings, loras):
            LoadedModel.__init__(self, model, settings, loras)

    class MediaDriver(Driver):
        name = "probe-media"
        distribution = "corral-probe-media"
        categories = frozenset({Category.IMAGE, Category.TTS})
        formats = frozenset({Format.GGUF})

        def load(self, model, settings, loras=()):
            return Handle(model, settings, loras)

    class plugin:  # noqa: N801
        @staticmethod
        @hookimpl
        def register_drivers(register):
            register(MediaDriver)

    return plugin


@pytest.fixture
def media_server(home, tmp_path):
    from factories import write_tiny_gguf

    from corral.library import open_library
    from corral.plugins import build_host, set_host
    from corral.records import Category

    host = build_host(entry_points=False, plugins=[_media_plugin()])
    set_host(host)
    library = open_library(home, host)
    library.import_path(write_tiny_gguf(tmp_path / "pic.gguf"), name="pic", category=Category.IMAGE)
    library.import_path(write_tiny_gguf(tmp_path / "voice.gguf"), name="voice", category=Category.TTS)
    runtime = Runtime(library)
    with ServerThread(runtime, state=True) as srv:
        yield srv
    runtime.close()
    library.store.close()
    set_host(None)


def test_images_and_speech_over_http_and_through_the_cli(media_server, tmp_path):
    import io
    import wave

    from PIL import Image

    client = openai.OpenAI(base_url=media_server.url + "/v1", api_key="unused", max_retries=0)
    images = client.images.generate(model="pic", prompt="abc", size="16x8", n=2, extra_body={"seed": 5})
    decoded = [Image.open(io.BytesIO(base64.b64decode(d.b64_json))) for d in images.data]
    assert [(i.format, i.size, i.getpixel((0, 0))) for i in decoded] == [
        ("PNG", (16, 8), (3, 5, 0)), ("PNG", (16, 8), (3, 6, 0))]
    url_format = httpx.post(media_server.url + "/v1/images/generations", timeout=WAIT,
                            json={"model": "pic", "prompt": "x", "response_format": "url"})
    assert url_format.status_code == 400 and "b64_json" in error_of(url_format)["message"]
    speech = client.audio.speech.create(model="voice", input="hi", voice="af", response_format="wav")
    with wave.open(io.BytesIO(speech.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
        frames = struct.unpack("<5h", wav.readframes(5))
    assert frames == (0, 16384, -16384, 32767, -32767)
    mp3 = httpx.post(media_server.url + "/v1/audio/speech", json={"model": "voice", "input": "x",
                                                                  "response_format": "mp3"}, timeout=WAIT)
    assert mp3.status_code == 400 and "'wav' or 'pcm'" in error_of(mp3)["message"]

    from click.testing import CliRunner

    from corral.cli import build_cli

    def run(*args):
        return CliRunner().invoke(build_cli(), [str(a) for a in args], catch_exceptions=False)

    picture = tmp_path / "out.png"
    made = run("imagine", "pic", "abcd", "--size", "12x4", "--steps", "7", "--seed", "1", "--out", picture)
    assert made.exit_code == 0, made.stderr
    assert Image.open(picture).getpixel((0, 0)) == (4, 1, 7) and Image.open(picture).size == (12, 4)
    edited = tmp_path / "edited.png"
    assert run("imagine", "pic", "x", "--image", picture, "--out", edited).exit_code == 0
    assert Image.open(edited).size == (12, 4) and Image.open(edited).getpixel((0, 0)) == (9, 9, 9)
    sound = tmp_path / "out.wav"
    spoken = run("speak", "voice", "hi", "--voice", "slow", "--out", sound)
    assert spoken.exit_code == 0, spoken.stderr
    with wave.open(str(sound)) as wav:  # the server's samples, written again by the CLI, unchanged
        assert wav.getframerate() == 8000
        assert struct.unpack("<5h", wav.readframes(5)) == frames
    served = {m["name"]: m["served"] for m in httpx.get(media_server.url + "/corral/ps", timeout=WAIT).json()["models"]}
    assert served == {"pic": 3, "voice": 2}  # refused requests never reached the models
