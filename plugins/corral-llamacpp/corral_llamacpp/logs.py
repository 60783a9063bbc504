"""llama.cpp's log, routed through Python: kept quiet, shown on stderr when asked, and read for the reason
of a failed load.

llama.cpp reports why it could not load a file ("missing tensor 'blk.0.attn_q.weight'", "unknown model
architecture") only in its log; llama-cpp-python then raises a bare "Failed to load model". One callback,
installed for llama.cpp and libmtmd alike, keeps the recent error lines so Corral's message can say why.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections import deque

# ggml_log_level (ggml.h): 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation of the previous line.
_ERROR, _WARN, _CONT = 4, 3, 5

_lock = threading.Lock()
_recent: deque[str] = deque(maxlen=20)
_state = {"echo": False, "last_level": 0, "installed": False}
_callback = None  # the ctypes callback must stay referenced for as long as llama.cpp may call it


def _on_log(level: int, text: bytes, _user_data) -> None:
    message = text.decode("utf-8", errors="replace") if text else ""
    if level == _CONT:
        level = _state["last_level"]
    _state["last_level"] = level
    if level in (_ERROR, _WARN) and message.strip():
        with _lock:
            _recent.append(message.strip())
    if _state["echo"]:
        sys.stderr.write(message)


def install(echo: bool = False) -> None:
    """Route llama.cpp's (and libmtmd's) log through Corral; ``echo`` shows it on stderr."""
    global _callback
    _state["echo"] = echo
    if _state["installed"]:
        return
    import llama_cpp

    _callback = llama_cpp.llama_log_callback(_on_log)
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    try:
        from llama_cpp import mtmd_cpp

        mtmd_cpp.mtmd_log_set(_callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(_callback, ctypes.c_void_p(0))
    except (ImportError, AttributeError, OSError):
        pass  # a build without libmtmd: nothing multimodal to quiet
    _state["installed"] = True


def clear() -> None:
    """Forget earlier errors (called before an operation whose failure should be explained)."""
    with _lock:
        _recent.clear()


def last_error() -> str | None:
    """The most telling recent error line of llama.cpp (errors before warnings), without its prefix."""
    with _lock:
        lines = list(_recent)
    if not lines:
        return None
    for wanted in ("error", "failed", "missing", "unknown", "invalid", "wrong"):
        for line in reversed(lines):
            if wanted in line.lower():
                return _strip_prefix(line)
    return _strip_prefix(lines[-1])


def _strip_prefix(line: str) -> str:
    # "llama_model_load: error loading model: missing tensor ..." -> "missing tensor ..."
    parts = [p.strip() for p in line.split(": ") if p.strip()]
    while len(parts) > 1 and (" " not in parts[0] or parts[0].startswith("error loading")):
        parts = parts[1:]
    return ": ".join(parts)
