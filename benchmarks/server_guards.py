"""What the guard middleware (Host, Origin, key and scope checks, body limits, /metrics figures, the request
log) adds to each request, p50 / p99, against the same app without it. Target: at most 0.2 ms.

Every check is on: three API keys, a browser Origin, a JSON body read, depth-checked and parsed, the answer's
token counts read, a Prometheus observation and a log line per request. Requests go straight into the ASGI
app in one event loop (no sockets), interleaved guarded / bare, so only the middleware differs:

1. the middleware around a stub app that answers a chat completion at once (the pure cost of the guards);
2. Corral's whole app (Starlette, routes, queue, a worker thread) with a driver that does no work, with and
   without the guards, on ``POST /v1/chat/completions`` and ``GET /corral/health``.

    python benchmarks/server_guards.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from corral import hookimpl
from corral.driver import Driver, LoadedModel
from corral.records import Category, ChatResult, Format

BODY = json.dumps({"model": "noop", "messages": [{"role": "user", "content": "Hello there, how are you?"}],
                   "max_tokens": 16, "temperature": 0.2}).encode()
ANSWER = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "model": "noop",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}).encode()
KEY = "corral-benchmark-key-0123456789abcdef0123456789"


class NoopModel(LoadedModel):
    def chat(self, messages, *, stream=False, **params):
        return ChatResult(text="ok", prompt_tokens=7, completion_tokens=1)


class NoopDriver(Driver):
    name = "noop"
    distribution = "corral-noop"
    categories = frozenset({Category.CHAT})
    formats = frozenset({Format.GGUF})

    def load(self, model, settings, loras=()):
        return NoopModel(model, settings, loras)


class noop_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(NoopDriver)


def scope(method: str, path: str, port: int) -> dict:
    headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"origin", b"http://localhost:3000"),
               (b"authorization", f"Bearer {KEY}".encode()), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if method == "POST":
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", port), "state": {}}


async def call(app, method: str, path: str, port: int = 8420) -> int:
    sent = {"body": False}
    status = {}

    async def receive():
        if not sent["body"]:
            sent["body"] = True
            return {"type": "http.request", "body": BODY if method == "POST" else b"", "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            status["code"] = message["status"]

    await app(scope(method, path, port), receive, send)
    return status["code"]


async def stub(scope, receive, send):
    """An app that reads the body and answers at once."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def interleaved(guarded, bare, method: str, path: str, n: int) -> tuple[list[float], list[float]]:
    for _ in range(200):  # warm up both
        assert await call(guarded, method, path) == 200
        assert await call(bare, method, path) == 200
    with_guards, without = [], []
    for _ in range(n):
        start = time.perf_counter()
        await call(guarded, method, path)
        middle = time.perf_counter()
        await call(bare, method, path)
        without.append(time.perf_counter() - middle)
        with_guards.append(middle - start)
    return with_guards, without


def report(label: str, with_guards: list[float], without: list[float]) -> float:
    g50, g99 = percentiles(with_guards)
    b50, b99 = percentiles(without)
    print(f"  {label:36} bare {b50 * 1e3:6.3f} / {b99 * 1e3:6.3f} ms   guarded {g50 * 1e3:6.3f} / {g99 * 1e3:6.3f} ms"
          f"   added {(g50 - b50) * 1e3:6.3f} / {(g99 - b99) * 1e3:6.3f} ms   ratio {g50 / b50:5.2f}x")
    return g50 - b50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()

    from corral.keys import KeyRing, env_keys
    from corral.library import open_library
    from corral.plugins import build_host
    from corral.runtime import Runtime
    from corral.server.app import create_app
    from corral.server.guards import GuardMiddleware, GuardOptions
    from corral.server.metrics import Metrics
    from corral.testing.files import write_tiny_gguf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        keys = KeyRing(env_keys(f"bench:full:{KEY},app:inference:other-key,ci:inference:third-key"))
        options = GuardOptions(bound_host="127.0.0.1", keys=keys, log_dir=root / "logs")
        library = open_library(root / "home", build_host(entry_points=False, plugins=[noop_plugin]))
        library.import_path(write_tiny_gguf(root / "noop.gguf"), name="noop")
        runtime = Runtime(library)
        runtime.load("noop")

        guard = GuardMiddleware(stub, options, runtime=runtime, metrics=Metrics(runtime))
        app_options = GuardOptions(bound_host="127.0.0.1", keys=keys, log_dir=root / "app-logs")
        guarded_app = create_app(runtime, guards=app_options)
        bare_app = create_app(runtime, guards=app_options)
        bare_app.user_middleware = []  # the same app, routes and state, without the guard middleware

        async def run() -> list[float]:
            print(f"Guards + metrics + request log per request ({args.requests} requests each, interleaved; "
                  f"p50 / p99)")
            added = [report("middleware around a stub app", *await interleaved(guard, stub, "POST", "/v1/chat",
                                                                                args.requests))]
            added.append(report("whole app POST /v1/chat/completions",
                                *await interleaved(guarded_app, bare_app, "POST", "/v1/chat/completions",
                                                   args.requests)))
            added.append(report("whole app GET /corral/health",
                                *await interleaved(guarded_app, bare_app, "GET", "/corral/health", args.requests)))
            return added

        added = asyncio.run(run())
        guard.request_log.close()
        lines = (root / "logs" / "requests.log").read_text().count("\n")
        print(f"  => the guards add {added[0] * 1e3:.3f} ms per request (p50, stub app; target <= 0.2 ms); "
              f"{lines} log lines written")
        runtime.close()
        library.store.close()


if __name__ == "__main__":
    main()
