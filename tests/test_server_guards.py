"""The server's guards over real sockets, with the real llama.cpp (a tiny GGUF) and sentence-transformers
(all-MiniLM-L6-v2) plugins behind them: foreign Host (DNS rebinding) and Origin, CORS preflights, non-JSON
bodies, scoped keys, body and nesting limits, what pull and import bodies may name, the exposure rule,
the request log. The `openai` client and plain clients keep working."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.errors import Forbidden

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

CHAT = "/v1/chat/completions"
WAIT = 60


def say(content: str = "hi", **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4,
            "temperature": 0, **extra}


@pytest.fixture(scope="module")
def real_library(tmp_path_factory, minilm_path):
    """A library with the tiny random-weight GGUF (chat, llama.cpp) and all-MiniLM-L6-v2 (embedding)."""
    llamacpp = pytest.importorskip("corral_llamacpp")
    sentence = pytest.importorskip("corral_sentence_transformers")
    from corral.library import open_library
    from corral.plugins import build_host
    from corral.testing.files import write_tiny_gguf

    home = tmp_path_factory.mktemp("guarded-home")
    library = open_library(home, build_host(entry_points=False, plugins=[llamacpp, sentence]))
    library.import_path(write_tiny_gguf(tmp_path_factory.mktemp("w") / "tiny.gguf"), name="tiny")
    library.update_settings("tiny", {"n_ctx": 256, "threads": 1, "threads_batch": 1, "chat_template": "chatml"})
    library.import_path(minilm_path, name="minilm")
    yield library
    library.store.close()


@contextlib.contextmanager
def guarded_server(library, watchdog=None, **kwargs):
    """A ServerThread with a runtime of its own over ``library`` (stopping it unloads everything);
    ``watchdog(runtime)`` makes its watchdog."""
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread

    runtime = Runtime(library)
    with ServerThread(runtime, watchdog=watchdog(runtime) if watchdog else None, **kwargs) as server:
        yield server


def options(**kwargs):
    from corral.server.guards import GuardOptions

    return GuardOptions(**kwargs)


@pytest.fixture(scope="module")
def server(real_library):
    with guarded_server(real_library) as srv:
        yield srv


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"]), body
    return body["error"]


def request(server, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None):
    """One request over http.client, which sends exactly the Host and headers given."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()


def own_host(server) -> str:
    return f"127.0.0.1:{server.port}"


def jsonb(value) -> bytes:
    return json.dumps(value).encode()


# --- Host ------------------------------------------------------------------------------------------


def test_a_foreign_host_is_refused_on_every_route_and_own_names_answer(server):
    for method, path, body in (("GET", "/v1/models", None), ("POST", CHAT, jsonb(say())),
                               ("POST", "/corral/load", jsonb({"model": "tiny"})), ("GET", "/metrics", None),
                               ("GET", "/no/such/route", None)):
        headers = {"Host": "evil.example", "Content-Type": "application/json"}
        status, _, data = request(server, method, path, body=body, headers=headers)
        assert status == 403, (method, path)
        assert json.loads(data)["error"]["code"] == "forbidden_host"
    assert server.runtime.ps() == []  # the chat and the load never ran
    for name in (own_host(server), f"localhost:{server.port}", "localhost", "127.0.0.2", f"[::1]:{server.port}",
                 "app.localhost"):
        status, _, _ = request(server, "GET", "/v1/models", headers={"Host": name})
        assert status == 200, name
    assert request(server, "GET", "/v1/models", headers={"Host": "192.0.2.7:1"})[0] == 403


def test_allow_host_adds_names_with_wildcards(real_library):
    with guarded_server(real_library, guards=options(allowed_hosts=("*.corp.example", "gpu-box"))) as srv:
        for name, status in (("a.corp.example", 200), ("gpu-box:8420", 200), ("corp.example.evil", 403),
                             ("evil.example", 403)):
            assert request(srv, "GET", "/v1/models", headers={"Host": name})[0] == status, name


def test_dns_rebinding_page_cannot_read_answers(server):
    # The rebinding page is same-origin with itself: Host and Origin both name the attacker's domain.
    headers = {"Host": f"rebind.attacker.example:{server.port}", "Origin": f"http://rebind.attacker.example:{server.port}",
               "Content-Type": "application/json"}
    status, answer_headers, data = request(server, "POST", CHAT, body=jsonb(say()), headers=headers)
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden_host"
    assert "access-control-allow-origin" not in {k.lower() for k in answer_headers}


# --- Origin and CORS -------------------------------------------------------------------------------


def test_cross_origin_requests_and_preflights_are_refused(server):
    evil = "https://evil.example"
    base = {"Host": own_host(server), "Origin": evil, "Content-Type": "application/json"}
    for method, path, body in (("POST", CHAT, jsonb(say())), ("POST", "/corral/load", jsonb({"model": "tiny"})),
                               ("GET", "/v1/models", None), ("POST", "/corral/unload", jsonb({"all": True}))):
        status, headers, data = request(server, method, path, body=body, headers=base)
        assert status == 403, (method, path)
        assert json.loads(data)["error"]["code"] == "forbidden_origin"
        assert "access-control-allow-origin" not in {k.lower() for k in headers}
    preflight = {"Host": own_host(server), "Origin": evil, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = request(server, "OPTIONS", CHAT, headers=preflight)
    assert status == 403 and "access-control-allow-origin" not in {k.lower() for k in headers}
    # A sandboxed frame or a file page sends Origin: null; any page can make one, so it is refused.
    assert request(server, "GET", "/v1/models", headers={**base, "Origin": "null"})[0] == 403
    assert server.runtime.ps() == []


def test_text_plain_and_other_simple_bodies_are_415(server):
    # The bodies a page may send cross-site without a preflight, and one without a type.
    for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", None):
        headers = {"Host": own_host(server)}
        if content_type:
            headers["Content-Type"] = content_type
        status, _, data = request(server, "POST", CHAT, body=jsonb(say()), headers=headers)
        assert status == 415, content_type
        error = json.loads(data)["error"]
        assert error["code"] == "unsupported_media_type" and "application/json" in error["message"]
    assert server.runtime.ps() == []  # nothing was loaded or run


def test_local_origins_preflight_and_answer_with_cors_headers(server):
    for origin in ("http://localhost:3000", f"http://127.0.0.1:{server.port}", "vscode-webview://abc",
                   "http://[::1]:5173"):
        preflight = {"Host": own_host(server), "Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type",
                     "Access-Control-Request-Private-Network": "true"}
        status, headers, _ = request(server, "OPTIONS", CHAT, headers=preflight)
        lowered = {k.lower(): v for k, v in headers.items()}
        assert status == 204, origin
        assert lowered["access-control-allow-origin"] == origin
        assert "POST" in lowered["access-control-allow-methods"]
        assert lowered["access-control-allow-headers"] == "authorization, content-type"
        assert lowered["access-control-allow-private-network"] == "true"
    headers = {"Host": own_host(server), "Origin": "http://localhost:3000", "Content-Type": "application/json"}
    status, answer, data = request(server, "POST", CHAT, body=jsonb(say()), headers=headers)
    assert status == 200 and json.loads(data)["choices"][0]["message"]["role"] == "assistant"
    lowered = {k.lower(): v for k, v in answer.items()}
    assert lowered["access-control-allow-origin"] == "http://localhost:3000"
    assert "X-Request-Id" in lowered["access-control-expose-headers"]


def test_allow_origin_patterns(real_library):
    allowed = options(allowed_origins=("https://*.example.com", "https://chat.example.org"))
    with guarded_server(real_library, guards=allowed) as srv:
        for origin, status in (("https://app.example.com", 200), ("https://chat.example.org", 200),
                               ("http://app.example.com", 403), ("https://example.com.evil.net", 403)):
            got = request(srv, "GET", "/v1/models", headers={"Host": own_host(srv), "Origin": origin})[0]
            assert got == status, origin


# --- plain clients -----------------------------------------------------------------------------------


def test_openai_client_and_plain_clients_still_work(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=WAIT)
    assert {"tiny", "minilm"} <= {m.id for m in client.models.list()}
    answer = client.chat.completions.create(**say("Hello"))
    assert answer.choices[0].message.role == "assistant" and answer.usage.completion_tokens > 0
    pieces = list(client.chat.completions.create(**say("Hello"), stream=True))
    assert pieces[-1].choices[0].finish_reason in ("stop", "length")
    vectors = client.embeddings.create(model="minilm", input=["a cat", "a dog"])
    assert [len(d.embedding) for d in vectors.data] == [384, 384]
    raw = httpx.post(server.url + CHAT, json=say(), timeout=WAIT, headers={"X-Request-Id": "trace-42"})
    assert raw.status_code == 200 and raw.headers["x-request-id"] == "trace-42"
    generated = httpx.get(server.url + "/v1/models", timeout=WAIT).headers["x-request-id"]
    assert len(generated) == 32 and generated != "trace-42"


# --- keys ----------------------------------------------------------------------------------------------


def test_scoped_keys_inference_key_cannot_manage(real_library, tmp_path):
    from corral.keys import KeyRing, add_key, env_keys

    _, filed = add_key("ops", "full", tmp_path)
    ring = KeyRing(env_keys("app:inference:run-only,admin:full:all-of-it"), path=tmp_path / "keys")
    with guarded_server(real_library, guards=options(keys=ring)) as srv, \
            httpx.Client(base_url=srv.url, timeout=WAIT) as http:
        run_only = {"Authorization": "Bearer run-only"}
        for path, body in (("/corral/load", {"model": "tiny"}), ("/corral/unload", {"all": True}),
                           ("/api/pull", {"model": "org/repo"}), ("/api/delete", {"model": "tiny"}),
                           ("/corral/settings", {"model": "tiny"})):
            refused = http.post(path, json=body, headers=run_only)
            assert refused.status_code == 403, path
            assert error_of(refused)["code"] == "forbidden" and "scope full" in error_of(refused)["message"]
        assert srv.runtime.ps() == []
        chat = http.post(CHAT, json=say(), headers=run_only)
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["role"] == "assistant"
        assert http.get("/corral/ps", headers=run_only).status_code == 200
        assert http.get("/metrics", headers=run_only).status_code == 200
        # Anthropic's clients send x-api-key.
        assert http.get("/v1/models", headers={"x-api-key": "run-only"}).status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "run-only"}):
            assert http.get("/metrics", headers=headers).status_code == 401
        for secret in ("all-of-it", filed):
            loaded = http.post("/corral/load", json={"model": "tiny"}, headers={"Authorization": f"Bearer {secret}"})
            assert loaded.status_code == 200, loaded.text
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="run-only", max_retries=0, timeout=WAIT)
        assert client.chat.completions.create(**say()).choices


# --- limits ----------------------------------------------------------------------------------------------


def test_body_size_depth_and_slow_bodies(real_library):
    from corral.server.limits import Limits

    small = options(limits=Limits(max_body=64 * 1024, max_depth=20, body_timeout=1.0))
    with guarded_server(real_library, guards=small) as srv:
        host = {"Host": own_host(srv), "Content-Type": "application/json"}
        big = jsonb(say("x" * 100_000))
        status, headers, data = request(srv, "POST", CHAT, body=big, headers=host)
        assert status == 413 and json.loads(data)["error"]["code"] == "payload_too_large"

        def chunks():
            for _ in range(40):
                yield b" " * 4096

        chunked = httpx.post(srv.url + CHAT, content=chunks(), headers={"Content-Type": "application/json"},
                             timeout=WAIT)
        assert chunked.status_code == 413
        deep = b'{"model": "tiny", "messages": ' + b"[" * 50 + b"]" * 50 + b"}"
        status, _, data = request(srv, "POST", CHAT, body=deep, headers=host)
        assert status == 400 and "nests deeper than 20" in json.loads(data)["error"]["message"]
        brackets_in_strings = jsonb(say("[{" * 15))  # brackets inside a string do not nest
        assert request(srv, "POST", CHAT, body=brackets_in_strings, headers=host)[0] == 200
        with socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) as sock:
            sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {own_host(srv)}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: 100\r\n\r\n{{".encode())
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert [m.served for m in srv.runtime.ps()] == [1]  # only the request within the limits ran


def test_deep_json_is_a_400_with_the_default_limit(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    status, _, data = request(server, "POST", CHAT, body=deep,
                              headers={"Host": own_host(server), "Content-Type": "application/json"})
    assert status == 400 and "nests deeper than 64" in json.loads(data)["error"]["message"]


def test_connections_beyond_the_limit_are_answered_503(real_library):
    from corral.server.limits import Limits

    with guarded_server(real_library, guards=options(limits=Limits(max_connections=4))) as srv:
        assert httpx.get(srv.url + "/v1/models", timeout=WAIT).status_code == 200
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=WAIT) for _ in range(4)]
        try:
            time.sleep(0.5)  # the server has accepted them all
            refused = httpx.get(srv.url + "/v1/models", timeout=WAIT)
            assert refused.status_code == 503, refused.text
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + WAIT
        while httpx.get(srv.url + "/v1/models", timeout=WAIT).status_code != 200:
            assert time.monotonic() < deadline, "the closed connections still count"
            time.sleep(0.2)


def test_pull_and_import_bodies_name_hub_refs_and_allowed_paths_only(server, real_library):
    home = Path(real_library.store.path).parent
    post = lambda path, body: httpx.post(server.url + path, json=body, timeout=WAIT)  # noqa: E731
    for body in ({"model": "http://169.254.169.254/latest/meta-data"}, {"model": "evil.example/org/model"},
                 {"model": "https://evil.example/org/model"}, {"model": "../../etc/passwd"},
                 {"model": "org/repo", "dest": "/tmp"}, {"name": "user@host/x"},
                 {"model": "https://huggingface.co@evil.example/x/y"}):
        refused = post("/api/pull", body)
        assert refused.status_code == 403, body
        assert error_of(refused)["code"] == "forbidden"
    for body in ({"path": "/etc/passwd"}, {"path": str(home / ".." / "x")}, {"path": "relative/model.gguf"},
                 {"paths": [str(home / "ok.gguf"), "/etc"]}):
        refused = post("/corral/import", body)
        assert refused.status_code == 403, body
    create = post("/api/create", {"model": "x", "modelfile": "FROM /etc/shadow\n"})
    assert create.status_code == 403
    # What passes the guard reaches the route and gets the route's own answer, never 403.
    not_a_hub = post("/api/pull", {"model": "llama3.2:1b"})
    assert not_a_hub.status_code == 400
    assert "'llama3.2:1b' is not a hub repository" in not_a_hub.json()["error"]
    for body in ({"model": "hf.co/org/repo:Q4_K_M"}, {"model": "https://huggingface.co/org/repo"}):
        no_plugin = post("/api/pull", body)  # this server's host has no hub plugin
        assert no_plugin.status_code == 501, body
        assert "pip install corral-huggingface" in no_plugin.json()["error"]
    for path, body in (("/corral/import", {"path": str(home / "models" / "a.gguf")}),
                       ("/api/create", {"model": "x", "from": "tiny"})):
        assert post(path, body).status_code == 404, (path, body)  # no such route in this server yet


def test_hub_ref_and_path_checks():
    from corral.server.limits import check_hub_ref, check_local_path

    for good in ("org/repo", "org/repo:main", "llama3.2", "llama3.2:1b", "hf.co/org/repo:Q4_K_M",
                 "https://huggingface.co/org/repo/blob/main/x.gguf", "https://modelscope.cn/models/org/repo"):
        assert check_hub_ref(good) == good
    assert check_hub_ref("https://mirror.internal/org/repo", link_prefixes=["https://mirror.internal/"])
    for bad in ("http://huggingface.co/org/repo", "file:///etc/passwd", "a/b/c/d", "org/../repo", "org\\repo",
                "10.0.0.1/org/repo", "org/repo:tag with space", "", "x" * 600, "org/re%2e%2epo"):
        with pytest.raises(Forbidden):
            check_hub_ref(bad)
    root = Path(__file__).parent
    assert check_local_path(str(root / "factories.py"), [root]) == (root / "factories.py").resolve()
    for bad in ("/etc/passwd", str(root / ".." / "README.md"), "factories.py"):
        with pytest.raises(Forbidden):
            check_local_path(bad, [root])


# --- exposure --------------------------------------------------------------------------------------------


def test_serving_beyond_loopback_needs_a_key(real_library, tmp_path):
    from corral.keys import KeyRing
    from corral.runtime import Runtime
    from corral.server.guards import check_exposure
    from corral.server.serve import ServerThread

    runtime = Runtime(real_library)
    with pytest.raises(Forbidden, match="--insecure-no-auth"):
        ServerThread(runtime, host="0.0.0.0")  # refused before anything is bound
    runtime.close()
    check_exposure("0.0.0.0", KeyRing.single("k"))
    check_exposure("0.0.0.0", None, insecure_no_auth=True)
    check_exposure("localhost", None)
    check_exposure("::1", None)
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home")}
    for name in ("CORRAL_API_KEY", "CORRAL_API_KEYS", "CORRAL_HOST"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "-m", "corral", "serve", "--host", "0.0.0.0", "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 23 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0 without an API key" in lines[0]


def test_serve_prints_the_address_and_whether_a_key_is_on(tmp_path):
    from test_server import start_serve, stop_serve

    home = tmp_path / "home"
    home.mkdir()
    process, info = start_serve(home, env={"CORRAL_API_KEYS": "ci:inference:ci-key"})
    try:
        assert httpx.get(info["url"] + "/v1/models", timeout=WAIT).status_code == 401
        ok = httpx.get(info["url"] + "/v1/models", headers={"Authorization": "Bearer ci-key"}, timeout=WAIT)
        assert ok.status_code == 200
    finally:
        log = stop_serve(process, home)
    port = info["url"].rsplit(":", 1)[1]
    assert f"listening on 127.0.0.1:{port} (API key required (1 key: 1 inference))" in log
    lines = [json.loads(l) for l in (home / "logs" / "requests.log").read_text().splitlines()]
    assert [(l["status"], l["key"]) for l in lines] == [(401, None), (200, "ci")]


# --- request log -------------------------------------------------------------------------------------------


def test_request_log_lines_without_and_with_prompts(real_library, tmp_path):
    secret_prompt = "my bank password is hunter2"
    for log_prompts in (False, True):
        logs = tmp_path / f"logs-{log_prompts}"
        with guarded_server(real_library, guards=options(log_dir=logs, log_prompts=log_prompts)) as srv:
            answer = httpx.post(srv.url + CHAT, json=say(secret_prompt), timeout=WAIT)
            assert answer.status_code == 200
            missing = httpx.post(srv.url + CHAT, json={**say(), "model": "nope"}, timeout=WAIT)
            assert missing.status_code == 404
        lines = [json.loads(l) for l in (logs / "requests.log").read_text().splitlines()]
        first, second = lines
        assert first["id"] == answer.headers["x-request-id"] and first["status"] == 200
        assert (first["route"], first["model"], first["method"]) == (CHAT, "tiny", "POST")
        usage = answer.json()["usage"]
        assert (first["prompt_tokens"], first["completion_tokens"]) == (usage["prompt_tokens"],
                                                                        usage["completion_tokens"])
        assert first["duration_ms"] > 0 and first["client"] == "127.0.0.1" and first["key"] is None
        assert (second["status"], second["model"]) == (404, "nope")
        text = (logs / "requests.log").read_text()
        assert (secret_prompt in text) is log_prompts
        if log_prompts:
            assert first["prompt"]["messages"][0]["content"] == secret_prompt


def test_request_log_rotates_by_size(tmp_path):
    from corral.server.request_log import RequestLog

    log = RequestLog(tmp_path, max_bytes=2000, backups=2)
    for i in range(100):
        log.write({"i": i, "pad": "x" * 50})
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["requests.log", "requests.log.1", "requests.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    last = [json.loads(l)["i"] for l in (tmp_path / "requests.log").read_text().splitlines()]
    assert last[-1] == 99


# --- the route table -----------------------------------------------------------------------------------------


def test_route_table_prefixes():
    from corral.server import scopes

    assert scopes.route_scope("/corral/load") == scopes.MANAGEMENT
    assert scopes.route_scope("/api/puller") == scopes.INFERENCE
    assert scopes.route_scope("/api/pull/status") == scopes.MANAGEMENT
    assert scopes.route_scope("/corral/models/x/settings") == scopes.MANAGEMENT
    assert scopes.route_scope("/corral/status") == scopes.INFERENCE
    assert scopes.route_scope("/corral/ps") == scopes.INFERENCE
    for path in ("/v1/messages", "/v1/responses", "/api/chat", "/api/tags", "/api/ps", "/corral/ps", "/metrics", "/"):
        assert scopes.route_scope(path) == scopes.INFERENCE, path
    assert scopes.body_types("/api/blobs/sha256:abc") == (("*",), 0)
    assert scopes.body_types(CHAT) is None
    try:
        scopes.set_route_scope("/plugin-ui/", scopes.PUBLIC)
        assert scopes.route_scope("/plugin-ui/app.js") == scopes.PUBLIC
    finally:
        del scopes.ROUTE_SCOPES["/plugin-ui/"]
        scopes._lookup.cache_clear()
