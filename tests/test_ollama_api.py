"""Ollama's API (``/api/...``) end to end: the official ``ollama`` client and ``langchain-ollama`` against
``corral serve`` with the real Gemma 3 270M GGUF (llama.cpp) and all-MiniLM-L6-v2 (sentence-transformers),
an API key on, and the local fake hub for pulls.

Also the pure parts: Ollama messages read into the drivers' shape, and Library.copy.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakehub import CHAT, Q8
from fakehub.fixtures import hub  # noqa: F401 - fixture
from test_runtime import lib, models, probe, probe_host  # noqa: F401 - fixtures
from test_server import start_serve, stop_serve

ollama = pytest.importorskip("ollama")
httpx = pytest.importorskip("httpx")

KEY = "ollama-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
#: A 1x1 PNG.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def served(tmp_path_factory, gemma_path, minilm_path, hub):  # noqa: F811
    """`corral serve` (a key on) over a library with Gemma (n_ctx 1024) and MiniLM, pointed at the fake hub."""
    pytest.importorskip("corral_llamacpp")
    pytest.importorskip("corral_sentence_transformers")
    pytest.importorskip("corral_huggingface")
    root = tmp_path_factory.mktemp("ollama")
    env = hub.env(dict(os.environ), home=root)
    home = Path(env["CORRAL_HOME"])
    home.mkdir(parents=True)
    for args in (["import", gemma_path, "--name", "gemma"], ["settings", "gemma", "--n-ctx", "1024"],
                 ["import", minilm_path, "--name", "minilm"]):
        out = subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert out.returncode == 0, out.stderr
    process, info = start_serve(home, env={**env, "CORRAL_API_KEY": KEY})
    try:
        yield info["url"], home
    finally:
        stop_serve(process, home)


@pytest.fixture(scope="module")
def client(served):
    return ollama.Client(host=served[0], headers=AUTH, timeout=300)


def wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def corral_facts(served, path: str, **body) -> dict:
    """What the ollama client's models drop: the ``corral`` extra fields of /api/show or /api/ps."""
    url = served[0] + path
    answer = httpx.post(url, json=body, headers=AUTH, timeout=30) if body else httpx.get(url, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def status_of(call) -> tuple[int, str]:
    with pytest.raises(ollama.ResponseError) as raised:
        call()
    return raised.value.status_code, raised.value.error


# --- version, tags, show, errors ------------------------------------------------------------------------


def test_version_tags_show_and_errors(served, client):
    url, _ = served
    version = httpx.get(url + "/api/version", headers=AUTH, timeout=30).json()["version"]
    assert tuple(int(p) for p in version.split(".")) >= (0, 6, 4)
    assert httpx.get(url + "/api/tags", timeout=30).status_code == 401  # the key guards /api too
    listed = {m.model: m for m in client.list().models}
    assert {"gemma:latest", "minilm:latest"} <= set(listed)
    gemma = listed["gemma:latest"]
    assert gemma.details.format == "gguf" and gemma.details.family == "gemma3"
    assert gemma.details.quantization_level == "Q4_K_M" and gemma.details.parameter_size.endswith("M")
    assert gemma.size > 200_000_000 and len(gemma.digest) == 64

    shown = client.show("gemma")  # no tag means :latest
    assert {"completion", "tools"} <= set(shown.capabilities) and "embedding" not in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "gemma3"
    assert shown.modelinfo["gemma3.context_length"] == 32768  # the model's own, not the saved n_ctx
    assert "num_ctx" in shown.parameters and "1024" in shown.parameters
    assert client.show("minilm:latest").capabilities == ["embedding"]

    assert status_of(lambda: client.show("nothing-here"))[0] == 404
    code, message = status_of(lambda: client.chat("gemma", messages=[{"role": "user", "content": "hi"}],
                                                  options={"mirostat": 2}))
    assert code == 400 and "options.mirostat" in message
    code, message = status_of(lambda: client.generate("gemma", "hi", suffix="end"))
    assert code == 400 and "'suffix'" in message
    raw = httpx.post(url + "/api/chat", headers=AUTH, timeout=30,
                     json={"model": "gemma", "messages": [], "n": 2})
    assert raw.status_code == 400 and "'n'" in raw.json()["error"]


# --- chat, generate, ps, keep_alive ---------------------------------------------------------------------


def test_chat_stream_generate_format_ps_and_keep_alive(served, client):
    ask = [{"role": "user", "content": "Name a colour."}]
    options = {"num_predict": 8, "temperature": 0, "seed": 1, "num_ctx": 1024}
    answer = client.chat("gemma", messages=ask, options=options, stream=False, keep_alive=-1)
    assert answer.message.role == "assistant" and answer.message.content.strip()
    assert answer.done and answer.done_reason in ("stop", "length")
    assert 0 < answer.eval_count <= 8 and answer.prompt_eval_count > 0 and answer.total_duration > 0
    pieces = list(client.chat("gemma", messages=ask, options=options, stream=True))
    assert len(pieces) > 2 and all(not p.done for p in pieces[:-1]) and pieces[-1].done
    assert "".join(p.message.content for p in pieces) == answer.message.content  # greedy: the same text
    assert pieces[-1].eval_count == answer.eval_count

    generated = client.generate("gemma", "The capital of France is", options=options, stream=False)
    assert generated.response.strip() and generated.done
    streamed = "".join(p.response for p in client.generate("gemma", "The capital of France is", options=options,
                                                      stream=True))
    assert streamed == generated.response

    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
              "required": ["colour"]}
    shaped = client.chat("gemma", messages=ask, format=schema, options={"num_predict": 40, "temperature": 0})
    assert json.loads(shaped.message.content)["colour"] in ("red", "blue")

    # Tools, think and logprobs reach the driver (the 270M model need not call; the request is served).
    tool = {"type": "function", "function": {"name": "weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    told = client.chat("gemma", messages=ask, tools=[tool], think=False, logprobs=True, top_logprobs=2,
                       options={"num_predict": 6, "temperature": 0})
    assert told.done and (told.message.content or told.message.tool_calls)
    assert told.logprobs and len(told.logprobs[0].top_logprobs) == 2
    # Ollama's API cannot force a call, but a format holding the answer to a call's JSON makes the model
    # write one: it comes back parsed as message.tool_calls (arguments an object), whole and streamed.
    call = {"type": "object", "properties": {"name": {"const": "weather"}, "arguments": {
        **tool["function"]["parameters"], "additionalProperties": False}}, "required": ["name", "arguments"]}
    ask_weather = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.chat("gemma", messages=ask_weather, tools=[tool], format=call,
                         options={"num_predict": 48, "temperature": 0})
    assert not called.message.content and [c.function.name for c in called.message.tool_calls] == ["weather"]
    assert isinstance(called.message.tool_calls[0].function.arguments["city"], str)
    lines = list(client.chat("gemma", messages=ask_weather, tools=[tool], format=call, stream=True,
                             options={"num_predict": 48, "temperature": 0}))
    assert [c for p in lines for c in p.message.tool_calls or ()] == called.message.tool_calls
    assert not "".join(p.message.content for p in lines) and lines[-1].done
    png = base64.b64decode(PNG)
    code, message = status_of(lambda: client.chat("gemma", messages=[{**ask[0], "images": [png]}]))
    assert code in (400, 422) and "mmproj" in message  # Gemma 270M has no projector

    loaded = {m.model: m for m in client.ps().models}
    gemma = loaded["gemma:latest"]
    assert gemma.context_length == 1024 and gemma.size > 0 and gemma.details.family == "gemma3"
    assert gemma.expires_at.year > 2200  # keep_alive -1: kept until asked
    extra = {m["name"]: m["corral"] for m in corral_facts(served, "/api/ps")["models"]}["gemma:latest"]
    assert extra["driver"] == "llamacpp" and extra["served"] >= 5 and extra["category"] == "chat"

    # keep_alive 0 unloads the model after its request.
    client.generate("gemma", "Hi", options={"num_predict": 2}, keep_alive=0)
    wait_until(lambda: "gemma:latest" not in {m.model for m in client.ps().models}, "gemma unloaded")
    # An empty request loads it (Ollama's preload), and with keep_alive 0 unloads it.
    assert client.generate("gemma", "").done_reason == "load"
    assert "gemma:latest" in {m.model for m in client.ps().models}
    assert client.generate("gemma", "", keep_alive=0).done_reason == "unload"
    assert "gemma:latest" not in {m.model for m in client.ps().models}


# --- embeddings -----------------------------------------------------------------------------------------


def test_embed_and_embeddings(client):
    vectors = client.embed("minilm", input=["a cat", "a kitten", "stock market"]).embeddings
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)  # unit vectors
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2])
    single = client.embeddings("minilm", prompt="a cat").embedding
    assert len(single) == 384
    assert status_of(lambda: client.embed("minilm", input="x", truncate=False))[0] == 400


# --- pull, copy, delete ---------------------------------------------------------------------------------


def test_pull_copy_delete(served, client, hub):  # noqa: F811
    name = f"hf.co/{CHAT}:Q8_0"  # Ollama's way to pull one quantization from Hugging Face
    steps = list(client.pull(name, stream=True))
    assert steps[0].status == "pulling manifest" and steps[-1].status == "success"
    files = [s for s in steps if s.status.startswith("pulling ") and s.total]
    assert files and files[-1].completed == files[-1].total
    assert hub.bytes_served(CHAT, Q8) > 0
    assert "completion" in client.show(name).capabilities
    path = Path(corral_facts(served, "/api/show", model=name)["corral"]["path"])
    assert path.name == Q8 and path.exists()
    assert client.pull(name, stream=False).status == "success"  # again: already here

    assert client.copy("gemma", "my-gemma:v2").status == "success"
    twin = corral_facts(served, "/api/show", model="my-gemma:v2")
    original = corral_facts(served, "/api/show", model="gemma:latest")
    assert os.path.realpath(twin["corral"]["path"]) == os.path.realpath(original["corral"]["path"])
    assert twin["corral"]["id"] != original["corral"]["id"] and twin["details"] == original["details"]
    assert {"my-gemma:v2", name} <= {m.model for m in client.list().models}
    assert status_of(lambda: client.copy("gemma", "minilm"))[0] == 409

    for model in ("my-gemma:v2", name):
        assert client.delete(model).status == "success"
    listed = {m.model for m in client.list().models}
    assert "my-gemma:v2" not in listed and name not in listed
    assert path.exists() and Path(original["corral"]["path"]).exists()  # the files stay
    assert status_of(lambda: client.delete("my-gemma:v2"))[0] == 404


# --- a downstream tool ----------------------------------------------------------------------------------


def test_langchain_chat_ollama_answers_through_corral(served):
    langchain_ollama = pytest.importorskip("langchain_ollama")
    chat = langchain_ollama.ChatOllama(model="gemma", base_url=served[0], temperature=0, num_predict=8,
                                       client_kwargs={"headers": AUTH, "timeout": 300})
    reply = chat.invoke("Name a colour.")
    assert isinstance(reply.content, str) and reply.content.strip()
    assert reply.usage_metadata["output_tokens"] <= 8


# --- pure parts -----------------------------------------------------------------------------------------


def test_ollama_messages_become_driver_messages():
    from corral.errors import InvalidRequest
    from corral.server.ollama_generate import chat_messages

    png = PNG
    messages = chat_messages([
        {"role": "user", "content": "What is in it, and the weather?", "images": [png]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "time", "arguments": {}}}]},
        {"role": "tool", "tool_name": "time", "content": "noon"},
        {"role": "tool", "content": "sunny"},
    ])
    assert messages[0]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png}}
    calls = messages[1]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {}]
    assert messages[2]["tool_call_id"] == calls[1]["id"] and messages[2]["name"] == "time"
    assert messages[3]["tool_call_id"] == calls[0]["id"]  # the one left, in order
    for bad, named in (([{"role": "user", "content": "x", "extra": 1}], "messages[0].extra"),
                       ([{"role": "user", "content": "x", "images": ["not base64!"]}], "images[0]")):
        with pytest.raises(InvalidRequest, match=named.replace("[", r"\[").replace("]", r"\]")):
            chat_messages(bad)


def test_library_copy_links_the_same_files(library, tmp_path):
    from corral.errors import Conflict
    from factories import write_tiny_gguf

    source = write_tiny_gguf(tmp_path / "tiny.gguf") or tmp_path / "tiny.gguf"
    model = library.import_path(source, name="tiny").model
    twin = library.copy("tiny", "tiny:copy")
    assert twin.id != model.id and twin.name == "tiny:copy"
    assert Path(twin.path).resolve() == Path(model.path).resolve() and Path(twin.path) != Path(model.path)
    assert (twin.category, twin.format, twin.facts, twin.size) == (model.category, model.format, model.facts,
                                                                   model.size)
    with pytest.raises(Conflict):
        library.copy("tiny", "tiny")
    library.remove("tiny:copy")
    assert Path(model.path).exists() and library.store.get_model("tiny").id == model.id


# --- the queue: the same 503 as every surface -----------------------------------------------------------


def test_a_full_queue_is_503_with_retry_after_on_every_surface(lib, models, probe):  # noqa: F811
    """The test drivers of test_runtime hold a request open; the queue (1 waiting) then refuses the next,
    in Ollama's shape on /api and in OpenAI's and Anthropic's on theirs."""
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread
    from test_runtime import WAIT, in_thread

    runtime = Runtime(lib, max_waiting=1, drain_timeout=WAIT)
    body = {"model": "a", "messages": [{"role": "user", "content": "hello"}], "stream": False}
    try:
        with ServerThread(runtime) as server:
            probe.gate.clear()
            try:
                first = in_thread(httpx.post, server.url + "/api/chat", json=body, timeout=WAIT)
                assert probe.entered.wait(WAIT)
                second = in_thread(httpx.post, server.url + "/api/chat", json=body, timeout=WAIT)
                wait_until(lambda: runtime.find("a").queue.waiting == 1, "the second request to queue")
                refused = httpx.post(server.url + "/api/generate", json={"model": "a", "prompt": "x"}, timeout=WAIT)
                assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
                assert isinstance(refused.json()["error"], str) and refused.json()["error"]
                client = ollama.Client(host=server.url, timeout=WAIT)
                assert status_of(lambda: client.chat("a", messages=body["messages"]))[0] == 503
                # The other surfaces share the queue: the same 503 and Retry-After, each in its own shape.
                for path, ask, kind in (
                        ("/v1/chat/completions", {"messages": body["messages"]}, "queue_full"),
                        ("/v1/responses", {"input": "x"}, "queue_full"),
                        ("/v1/messages", {"messages": body["messages"], "max_tokens": 4}, "overloaded_error")):
                    refused = httpx.post(server.url + path, json={"model": "a", **ask}, timeout=WAIT)
                    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1, path
                    error = refused.json()["error"]
                    assert kind == (error["type"] if path == "/v1/messages" else error["code"]), refused.text
            finally:
                probe.gate.set()
            for thread, box in (first, second):
                thread.join(WAIT)
                assert box["value"].status_code == 200, box
                assert box["value"].json()["message"]["content"] == "a heard hello"
    finally:
        runtime.close()
