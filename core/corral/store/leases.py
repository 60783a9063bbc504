"""Who holds a lease, in words: the process id and its command line (through psutil), so a refusal
such as ``corral rm`` on a model another process has loaded names that process."""

from __future__ import annotations

import os
from typing import Sequence

#: Longest command line shown for a process.
MAX_COMMAND = 120


def command_line(pid: int) -> str | None:
    """The command line of process ``pid``, shortened (``python -m corral chat m`` reads ``corral chat m``);
    None when it cannot be read (gone, or another user's)."""
    import psutil

    try:
        args = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return None
    if not args:
        return None
    if len(args) >= 3 and args[1:3] == ["-m", "corral"]:
        args = ["corral", *args[3:]]
    else:
        args = [os.path.basename(args[0]), *args[1:]]
    text = " ".join(args)
    return text if len(text) <= MAX_COMMAND else text[: MAX_COMMAND - 3] + "..."


def is_server(pid: int) -> bool:
    """Whether process ``pid`` runs ``corral serve``."""
    text = command_line(pid) or ""
    return text.startswith("corral serve")


def describe_holders(holders: Sequence[tuple[int, str]]) -> str:
    """``process 1234 (corral chat gemma)``, joined with "and" for several."""
    parts = []
    for pid, _started in holders:
        command = command_line(pid)
        parts.append(f"process {pid} ({command})" if command else f"process {pid}")
    return " and ".join(parts)
