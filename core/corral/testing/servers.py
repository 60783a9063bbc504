"""A started server over a fresh runtime of a library, for end-to-end tests."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


@contextlib.contextmanager
def serving(library: Any, *, executor: Any = None, **options: Any) -> Iterator[Any]:
    """``with serving(library) as server: httpx.get(server.url + "/v1/models")``: a
    :class:`corral.server.serve.ServerThread` (``options`` are its keyword arguments) around a new
    :class:`corral.runtime.Runtime` of ``library`` (``executor``: where its models live; in this process by
    default). Leaving the block stops the server and closes the runtime."""
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread

    runtime = Runtime(library, executor=executor)
    try:
        with ServerThread(runtime, **options) as server:
            yield server
    finally:
        runtime.close()
