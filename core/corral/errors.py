"""One error hierarchy for Corral.

Every error a user can cause is a :class:`CorralError`. The CLI prints its message as one line and exits
with :attr:`CorralError.exit_code`; the HTTP API maps :attr:`CorralError.http_status`. Messages name the
file or model involved and say what to do next.

Every class lives here, and each exit code belongs to one class (subclasses that add no code of their
own share their parent's): plugins subclass these classes instead of inventing codes.
docs/cli.md lists the table; tests/test_errors.py keeps the codes unique across the core and plugins.
"""

from __future__ import annotations

import re


class CorralError(Exception):
    """Base class: a clear, user-facing problem (never a bug)."""

    exit_code = 1
    http_status = 400


class NotFound(CorralError):
    """A model, LoRA, component, path or plugin that does not exist."""

    exit_code = 2
    http_status = 404


class Conflict(CorralError):
    """The request clashes with the library's state (duplicate name, loaded model, ...)."""

    exit_code = 3
    http_status = 409


class DetectionError(CorralError):
    """A file or directory that is not a model Corral can recognise, or is malformed."""

    exit_code = 4
    http_status = 422


class UnsafeFile(DetectionError):
    """A file whose content could run code when loaded (a pickle with non-allow-listed imports)."""


class Incompatible(CorralError):
    """A LoRA or component that does not fit its base model."""

    exit_code = 5
    http_status = 422


class PluginMissing(CorralError):
    """The operation needs a plugin (or its backend library) that is not installed."""

    exit_code = 6
    http_status = 501

    def __init__(self, message: str, *, distribution: str | None = None) -> None:
        super().__init__(message)
        self.distribution = distribution


class Busy(CorralError):
    """A model's request queue is full; try again later."""

    exit_code = 7
    http_status = 503


class InsufficientMemory(CorralError):
    """A load whose memory estimate does not fit in free memory (use --force to try anyway)."""

    exit_code = 8
    http_status = 507


class InvalidSetting(CorralError):
    """A load setting or option with an unknown name or a value out of range."""

    exit_code = 9
    http_status = 422


class QueueFull(Busy):
    """A model already has the most requests waiting that its queue allows.

    ``retry_after`` is how many seconds the client should wait before sending the request again.
    """

    retry_after: int = 1


class NodeLost(Busy):
    """A cluster node (or the actor holding a model there) stopped answering: its requests fail, its
    models are unloaded and loaded again elsewhere on the next request; retry after ``retry_after`` s."""

    retry_after: int = 2


class Unsupported(CorralError):
    """The loaded model cannot do the asked task."""

    exit_code = 10
    http_status = 400


class InvalidRequest(CorralError):
    """An HTTP request body that is missing a field or has one of the wrong type."""

    exit_code = 11
    http_status = 400


class ServerUnavailable(CorralError):
    """The Corral server is not running and could not be started, or stopped answering."""

    exit_code = 12
    http_status = 503


class DownloadError(CorralError):
    """A hub answer or a transfer that retrying now cannot fix; partial data is kept for the next try."""

    exit_code = 13
    http_status = 502


class IntegrityError(DownloadError):
    """A downloaded file whose sha256 or size differs from what the hub lists; it is discarded."""

    exit_code = 14


class UnsafeName(DownloadError):
    """A hub file name that is absolute or climbs out of the download folder (``..``)."""

    exit_code = 15
    http_status = 422


class NoSpace(DownloadError):
    """Not enough free disk space for what a pull still has to fetch."""

    exit_code = 16
    http_status = 507


class Paused(DownloadError):
    """The pull was interrupted (Ctrl-C); running it again resumes from the partial data."""

    exit_code = 130
    http_status = 499


class CatalogError(CorralError):
    """A catalog entry (from a file or a plugin) that is malformed."""

    exit_code = 17
    http_status = 422


class StoreError(CorralError):
    """The library database cannot be opened, is locked for too long, or is newer than this Corral."""

    exit_code = 18
    http_status = 500


class ConfirmationNeeded(CorralError):
    """A deletion asked for without a terminal to confirm on and without ``--yes``."""

    exit_code = 19


class Truncated(DetectionError):
    """The file ends before the structure its header declares."""


class OutputNotWritable(CorralError):
    """An output directory that cannot be created or written (or holds files and --force was not given)."""

    exit_code = 20
    http_status = 409


class InvalidInput(CorralError):
    """Input data for a task that is missing, empty or malformed: no texts to embed, an empty corpus."""

    exit_code = 21
    http_status = 422


class TokenizerError(CorralError):
    """A tokenizer directory that its library cannot load, or that does not fit the model."""

    exit_code = 22
    http_status = 422


class Forbidden(CorralError):
    """A request the server refuses to serve: a foreign Host or Origin, a key without the scope for the
    route, a path outside the allowed roots; or serving beyond loopback without a key."""

    exit_code = 23
    http_status = 403


class RunnerFailed(CorralError):
    """A model's runner process died (a crash, an abort, an out-of-memory kill) or its driver raised an
    unexpected error; the message names the model and the cause. The model is loaded again on the next
    request."""

    exit_code = 24
    http_status = 500


class TimedOut(CorralError):
    """A request ran past its model's time limit (the ``request_timeout`` setting) and was cancelled."""

    exit_code = 25
    http_status = 504


class Cancelled(CorralError):
    """A request whose client left before its answer was ready; its generation was cancelled."""

    exit_code = 26
    http_status = 499


def error_code(cls: type) -> str:
    """The ``code`` an error class has in HTTP error bodies, ``--json`` errors and failed jobs:
    ``QueueFull`` -> ``queue_full``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
