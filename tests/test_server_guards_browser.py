"""The guards against a real browser (Debian's Chromium driven by Playwright): what a page on another
site, or a DNS-rebinding page, can make Chromium send to a local server, and what it gets back.

Chromium resolves ``evil.example`` to 127.0.0.1 (``--host-resolver-rules``), so the attacker's page is
served by a small HTTP server of this test, and the browser applies its own rules (Origin on cross-site
requests, CORS preflights for JSON bodies, none for ``text/plain``, opaque ``no-cors`` answers). The
server's request log proves each refused request reached the server and was refused there, not by the
browser, and that no model was loaded or run. Skips, saying why, without Playwright or Chromium.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from test_server_guards import CHAT, guarded_server, options, real_library, say  # noqa: F401 - fixtures

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ATTACKER = "evil.example"
PAGE = b"<!doctype html><title>a page on another site</title><p>hello</p>"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    """A web server for the attacker's (and a local app's) page: its port."""
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    yield pages.server_address[1]
    pages.shutdown()
    pages.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1"]
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def logged(real_library, tmp_path_factory):  # noqa: F811
    """A server writing its request log; yields (server, function giving the log lines so far)."""
    logs = tmp_path_factory.mktemp("browser-logs")
    with guarded_server(real_library, guards=options(log_dir=logs)) as srv:
        yield srv, lambda: _lines(logs / "requests.log")


def _lines(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def wait_for_line(lines, **match) -> dict:
    """The first log line with all of ``match`` (the writer thread writes them a moment later)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in lines():
            if all(line.get(k) == v for k, v in match.items()):
                return line
        time.sleep(0.1)
    raise AssertionError(f"no request log line with {match}: {lines()}")


@pytest.fixture
def tab(browser):
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


SEND = """async ([url, init]) => {
    try {
        const answer = await fetch(url, init);
        let text = null;
        try { text = await answer.text(); } catch (e) {}
        return {type: answer.type, status: answer.status, text, id: answer.headers.get("x-request-id")};
    } catch (e) {
        return {error: String(e)};
    }
}"""


def test_a_cross_site_text_plain_post_reaches_the_server_and_is_refused(logged, site, tab):
    server, lines = logged
    tab.goto(f"http://{ATTACKER}:{site}/")
    body = json.dumps({**say("from another site"), "model": "tiny"})
    # The request a page can send anywhere without a preflight: text/plain, no-cors, answer opaque.
    sent = tab.evaluate(SEND, [server.url + CHAT, {"method": "POST", "mode": "no-cors", "body": body,
                                                   "headers": {"Content-Type": "text/plain"}}])
    assert sent.get("type") == "opaque", sent
    line = wait_for_line(lines, path=CHAT, method="POST")
    assert (line["status"], line["denied"]) == (403, "forbidden_origin")
    load = tab.evaluate(SEND, [server.url + "/corral/load", {"method": "POST", "mode": "no-cors",
                                                             "body": json.dumps({"model": "tiny"})}])
    assert load.get("type") == "opaque", load
    line = wait_for_line(lines, path="/corral/load")
    assert (line["status"], line["denied"]) == (403, "forbidden_origin")
    assert server.runtime.ps() == []  # nothing was loaded or run


def test_a_cross_site_json_fetch_fails_at_its_preflight(logged, site, tab):
    server, lines = logged
    tab.goto(f"http://{ATTACKER}:{site}/")
    sent = tab.evaluate(SEND, [server.url + "/v1/completions", {
        "method": "POST", "body": json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 2}),
        "headers": {"Content-Type": "application/json", "Authorization": "Bearer stolen"}}])
    assert "TypeError" in sent.get("error", ""), sent  # CORS refused: the script reads nothing
    line = wait_for_line(lines, path="/v1/completions", method="OPTIONS")
    assert (line["status"], line["denied"]) == (403, "forbidden_origin")
    assert not [l for l in lines() if l["path"] == "/v1/completions" and l["method"] == "POST"]
    readable = tab.evaluate(SEND, [server.url + "/v1/models", {}])  # a simple GET: sent, refused, unreadable
    assert "TypeError" in readable.get("error", ""), readable
    line = wait_for_line(lines, path="/v1/models", denied="forbidden_origin")
    assert line["status"] == 403
    assert server.runtime.ps() == []


def test_a_dns_rebinding_page_reads_only_the_refusal(logged, tab):
    """After rebinding, the attacker's name points at the server: the page is same-origin with it, so the
    browser lets its script read every answer; the server answers none but the 403."""
    server, lines = logged
    rebound = f"http://{ATTACKER}:{server.port}"
    landing = tab.goto(rebound + "/v1/models")
    assert landing.status == 403
    for path, init in (("/v1/models", {}),
                       (CHAT, {"method": "POST", "body": json.dumps(say("rebound")),
                               "headers": {"Content-Type": "application/json"}})):
        sent = tab.evaluate(SEND, [rebound + path, init])
        assert sent.get("status") == 403, sent
        assert json.loads(sent["text"])["error"]["code"] == "forbidden_host"
    line = wait_for_line(lines, path=CHAT, denied="forbidden_host")
    assert line["status"] == 403
    assert server.runtime.ps() == []


def test_a_local_app_and_the_servers_own_page_are_answered(logged, site, tab):
    server, lines = logged
    # A web app on localhost (another port): preflight passes, the answer and its request id are readable.
    tab.goto(f"http://localhost:{site}/")
    sent = tab.evaluate(SEND, [server.url + CHAT, {"method": "POST", "body": json.dumps(say("hello")),
                                                   "headers": {"Content-Type": "application/json"}}])
    assert sent.get("status") == 200, sent
    assert json.loads(sent["text"])["choices"][0]["message"]["role"] == "assistant"
    assert sent["id"] and wait_for_line(lines, id=sent["id"])["status"] == 200
    assert wait_for_line(lines, path=CHAT, method="OPTIONS")["status"] == 204
    # A page the server itself serves: same origin, Chromium still sends Origin on a POST.
    tab.goto(server.url + "/corral/health")
    greedy = {"model": "tiny", "prompt": "hi", "max_tokens": 2, "temperature": 0, "seed": 0}
    own = tab.evaluate(SEND, ["/v1/completions", {"method": "POST", "headers": {"Content-Type": "application/json"},
                                                  "body": json.dumps(greedy)}])
    assert own.get("status") == 200, own
    assert json.loads(own["text"])["usage"]["completion_tokens"] == 2
