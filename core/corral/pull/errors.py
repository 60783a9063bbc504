"""What can go wrong in a pull, as Corral errors (one clear line at the CLI, an HTTP status in the API)."""

from __future__ import annotations

from corral.errors import CorralError


class DownloadError(CorralError):
    """A hub answer or a transfer that retrying now cannot fix; partial data is kept for the next try."""

    exit_code = 11
    http_status = 502


class IntegrityError(DownloadError):
    """A downloaded file whose sha256 or size differs from what the hub lists; it is discarded."""

    exit_code = 12


class UnsafeName(DownloadError):
    """A hub file name that is absolute or climbs out of the download folder (``..``)."""

    exit_code = 13
    http_status = 422


class NoSpace(DownloadError):
    """Not enough free disk space for what a pull still has to fetch."""

    exit_code = 14
    http_status = 507


class Paused(DownloadError):
    """The pull was interrupted (Ctrl-C); running it again resumes from the partial data."""

    exit_code = 130
    http_status = 499
