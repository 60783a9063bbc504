"""What each protocol surface adds over the in-process runtime call: OpenAI chat completions, OpenAI
Responses, Anthropic Messages and Ollama's chat and generate, each answered whole and streamed.

A driver that does no work answers (so only Corral is timed); every request goes through the same app
``corral serve`` runs (uvicorn, the guard middleware, Starlette, JSON, a worker thread) on one keep-alive
connection. Printed: p50 and p99 per request, the time added over ``Runtime.call``, and the ratio.

    python benchmarks/protocol_overhead.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_overhead import NoopDriver, NoopModel, percentiles, timed  # noqa: E402

from corral import hookimpl  # noqa: E402
from corral.records import ChatResult  # noqa: E402

MESSAGES = [{"role": "user", "content": "hi"}]

#: (label, path, body, streamed): one request per surface, the same question everywhere.
SURFACES = [
    ("OpenAI /v1/chat/completions", "/v1/chat/completions", {"model": "noop", "messages": MESSAGES}),
    ("OpenAI /v1/chat/completions SSE", "/v1/chat/completions",
     {"model": "noop", "messages": MESSAGES, "stream": True}),
    ("OpenAI /v1/responses", "/v1/responses", {"model": "noop", "input": "hi"}),
    ("OpenAI /v1/responses SSE", "/v1/responses", {"model": "noop", "input": "hi", "stream": True}),
    ("Anthropic /v1/messages", "/v1/messages", {"model": "noop", "max_tokens": 8, "messages": MESSAGES}),
    ("Anthropic /v1/messages SSE", "/v1/messages",
     {"model": "noop", "max_tokens": 8, "messages": MESSAGES, "stream": True}),
    ("Ollama /api/chat", "/api/chat", {"model": "noop", "messages": MESSAGES, "stream": False}),
    ("Ollama /api/chat NDJSON", "/api/chat", {"model": "noop", "messages": MESSAGES}),
    ("Ollama /api/generate", "/api/generate", {"model": "noop", "prompt": "hi", "stream": False}),
]


class StreamingNoopModel(NoopModel):
    """The no-op model, also streamed (one piece, then the counts), as the streamed surfaces need."""

    def chat(self, messages, *, stream=False, **params):
        if not stream:
            return super().chat(messages, **params)
        return self._pieces()

    @staticmethod
    def _pieces():
        yield "ok"
        return ChatResult(text="ok", prompt_tokens=1, completion_tokens=1)


class StreamingNoopDriver(NoopDriver):
    def load(self, model, settings, loras=()):
        return StreamingNoopModel(model, settings, loras)


class streaming_noop_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_drivers(register):
        register(StreamingNoopDriver)


def measure(home: Path, gguf: Path, n: int) -> None:
    from corral.library import open_library
    from corral.plugins import build_host
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread

    library = open_library(home, build_host(entry_points=False, plugins=[streaming_noop_plugin]))
    library.import_path(gguf, name="noop")
    runtime = Runtime(library)
    runtime.load("noop")
    timed(lambda: runtime.call("noop", "chat", MESSAGES), 50)
    base = timed(lambda: runtime.call("noop", "chat", MESSAGES), n)
    rows = []
    with ServerThread(runtime) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port)
        for label, path, body in SURFACES:
            encoded = json.dumps(body).encode()

            def post():
                connection.request("POST", path, encoded, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()  # a stream is read to its end
                assert response.status == 200, (label, data[:300])

            timed(post, 50)  # warm up
            rows.append((label, timed(post, n)))
        connection.close()
    runtime.close()
    library.store.close()

    base50, base99 = percentiles(base)
    print(f"Added latency per request over Runtime.call ({n} sequential requests per surface, no-op driver)")
    print(f"  {'surface':34} {'p50':>9} {'p99':>9} {'added p50':>10} {'added p99':>10} {'p50 ratio':>10}")
    print(f"  {'Runtime.call (in-process)':34} {base50 * 1e3:7.3f}ms {base99 * 1e3:7.3f}ms")
    for label, samples in rows:
        p50, p99 = percentiles(samples)
        print(f"  {label:34} {p50 * 1e3:7.3f}ms {p99 * 1e3:7.3f}ms {(p50 - base50) * 1e3:8.3f}ms "
              f"{(p99 - base99) * 1e3:8.3f}ms {p50 / base50:9.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from factories import write_tiny_gguf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gguf = root / "noop.gguf"
        write_tiny_gguf(gguf)
        measure(root / "home", gguf, args.requests)


if __name__ == "__main__":
    main()
