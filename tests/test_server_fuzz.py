"""Hostile input against the real server (tiny GGUF through llama.cpp, all-MiniLM-L6-v2):

- generated bodies (wrong types, huge numbers, deep nesting, invalid UTF-8, huge strings) posted to every
  route: never a 500, never a traceback in the answer, and the server keeps answering;
- 100 connections sending their headers one byte a second do not stop a normal request, and are dropped
  once the header deadline passes.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from test_server_guards import CHAT, WAIT, guarded_server, options, real_library, say  # noqa: F401 - fixtures

httpx = pytest.importorskip("httpx")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MODELS = ("tiny", "minilm", "nope", "", "x" * 300)
FIELDS = ("model", "messages", "prompt", "input", "stream", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "top_k", "seed", "stop", "n", "echo", "stream_options", "encoding_format", "dimensions",
          "query", "documents", "top_n", "size", "steps", "image", "response_format", "voice", "speed", "loras",
          "settings", "force", "keep_alive", "category", "all", "normalize", "batch_size", "logprobs", "tools")

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64 + 1, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["\x00", "\ud800", "🙂" * 50, "{{", "]]", "a" * 5000]),
)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool", 7]),
                                           "content": json_values}), max_size=3)


@st.composite
def request_bodies(draw) -> bytes:
    """Bytes to post: mostly JSON objects that look like requests, some that are anything but."""
    kind = draw(st.sampled_from(["object", "object", "object", "value", "bytes", "deep", "huge", "numbers"]))
    if kind == "object":
        body = {"model": draw(st.sampled_from(MODELS))}
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
            body[name] = draw(messages) if name == "messages" and draw(st.booleans()) else draw(json_values)
        if body.get("max_tokens") is None:
            body["max_tokens"] = draw(st.sampled_from([1, 2, 3]))  # keeps real generation short
        return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    if kind == "value":
        return json.dumps(draw(json_values), allow_nan=True).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(st.sampled_from([b"\xff\xfe\xfd", b'{"model": "tiny\xff"}', b"\x00" * 10, b"{", b"",
                                     b'{"model": "tiny", "messages": [{"role": "user", "content": "\xc3\x28"}]}']))
    if kind == "deep":
        depth = draw(st.integers(min_value=60, max_value=200_000))
        opener = draw(st.sampled_from([b"[", b'{"a":']))
        closer = b"]" if opener == b"[" else b"}"
        return b'{"model": "tiny", "messages": ' + opener * depth + b"1" + closer * depth + b"}"
    if kind == "huge":
        size = draw(st.integers(min_value=100_000, max_value=3_000_000))
        field = draw(st.sampled_from(["prompt", "input", "query", "model"]))
        return json.dumps({"model": "tiny", field: "a " * (size // 2), "max_tokens": 1}).encode()
    digits = draw(st.integers(min_value=4000, max_value=100_000))
    return b'{"model": "tiny", "max_tokens": 1' + b"9" * digits + b', "messages": [{"role": "user", "content": "x"}]}'


@pytest.fixture(scope="module")
def fuzz_server(real_library):  # noqa: F811
    with guarded_server(real_library) as srv:
        # POST /corral/stop ends the server, whatever the body: that is what it is for (tests/test_cli_server.py).
        routes = sorted({(m, r.path) for r in srv.app.routes for m in (getattr(r, "methods", None) or ())
                         if m in ("GET", "POST") and "{" not in r.path and r.path != "/corral/stop"})
        yield srv, routes


def test_generated_bodies_never_break_a_route(fuzz_server):
    server, routes = fuzz_server
    assert ("POST", CHAT) in routes and ("POST", "/corral/load") in routes and ("GET", "/metrics") in routes
    client = httpx.Client(base_url=server.url, timeout=WAIT)
    seen = {"statuses": set()}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(route=st.sampled_from(routes), body=request_bodies(),
           content_type=st.sampled_from(["application/json"] * 6 + ["text/plain", "application/json; charset=latin-1"]))
    def check(route, body, content_type):
        method, path = route
        answer = client.request("POST", path, content=body, headers={"Content-Type": content_type})
        seen["statuses"].add(answer.status_code)
        assert answer.status_code < 500 or answer.status_code in (501, 503, 507), (path, body[:200], answer.text[:300])
        assert "Traceback" not in answer.text, answer.text[:500]
        if answer.headers.get("content-type", "").startswith("application/json") and answer.status_code >= 400:
            assert "error" in answer.json()

    try:
        check()
        # Still alive, and still answering a real request.
        assert client.get("/corral/health").status_code == 200
        assert client.post(CHAT, json=say("still there?")).status_code == 200
    finally:
        client.close()
    assert 500 not in seen["statuses"] and {400, 415} <= seen["statuses"]


def test_slow_clients_do_not_block_a_normal_request(real_library):  # noqa: F811
    from corral.server.limits import Limits

    guards = options(limits=Limits(header_timeout=4.0))
    stop = threading.Event()
    closed = []

    def trickle(port: int) -> None:
        request = f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n".encode()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.settimeout(0.01)
                for byte in request:
                    if stop.wait(1.0):
                        return
                    sock.sendall(bytes([byte]))
                    try:
                        sock.recv(4096)  # returns once the server answered 408 or hung up
                    except socket.timeout:
                        continue
                    closed.append(time.monotonic())
                    return
        except OSError:
            closed.append(time.monotonic())

    with guarded_server(real_library, guards=guards) as srv:
        threads = [threading.Thread(target=trickle, args=(srv.port,), daemon=True) for _ in range(100)]
        try:
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(1.5)  # every slow connection is open and mid-headers
            answer = httpx.post(srv.url + CHAT, json=say("hello"), timeout=WAIT)
            assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["role"] == "assistant"
            assert httpx.get(srv.url + "/corral/health", timeout=WAIT).status_code == 200
            assert not closed or min(closed) - started > 3.5  # none dropped before its deadline
            deadline = time.monotonic() + 20
            while len(closed) < 100 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert len(closed) == 100, f"{100 - len(closed)} slow connections are still open"
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
