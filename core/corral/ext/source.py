"""Download sources (model hubs): search, list files, say where each file comes from.

:mod:`corral.pull` does the rest for every source: resumable downloads into ``.part`` files,
verification, moving into place, and adding the result to the library with its provenance.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar, Iterator, Mapping, Sequence

from corral.errors import CorralError, DownloadError
from corral.ext.backend import backend_status
from corral.records import BackendStatus, Category, RemoteFile, RepoSummary, Snapshot, Transfer


class Source:
    """A model hub: search, list files, download.

    A hub plugin answers :meth:`search`, :meth:`snapshot` (or just :meth:`files`) and :meth:`transfers`;
    :mod:`corral.pull` does the rest: resumable downloads into ``.part`` files, verification, moving into
    place, and adding the result to the library with its provenance.
    """

    name: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    #: URL prefixes this hub's links start with (``corral pull URL`` picks the source by them).
    url_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check(cls) -> BackendStatus:
        return backend_status(cls.name, cls.distribution, cls.requires)

    @classmethod
    def link_prefixes(cls) -> tuple[str, ...]:
        """The URL prefixes that name this hub now: :attr:`url_prefixes` plus a configured endpoint."""
        return cls.url_prefixes

    def search(self, query: str, *, category: Category | None = None, limit: int = 20) -> list[RepoSummary]:
        raise NotImplementedError

    def files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        raise NotImplementedError

    def snapshot(self, repo: str, revision: str | None = None, *, offline: bool = False) -> Snapshot:
        """The files of ``repo`` at ``revision``, pinned to the commit it resolves to where the hub says.

        ``offline`` answers from the hub's local cache only. The default lists :meth:`files`.
        """
        if offline:
            raise CorralError(f"the {self.name} hub keeps no local cache to answer offline")
        return Snapshot(source=self.name, repo=repo, revision=revision, files=tuple(self.files(repo, revision)))

    def transfers(self, snapshot: Snapshot, files: Sequence[RemoteFile], *, dest: Path | None) -> list[Transfer]:
        """Where each of ``files`` comes from and where its verified bytes land.

        Under ``dest`` when given (``dest / name``), else wherever the hub keeps downloads (its cache).
        A file already in place gets ``url=None``. Names are checked by :mod:`corral.pull` before this runs.
        """
        raise NotImplementedError

    def open_range(
        self, url: str, *, start: int = 0, headers: Mapping[str, str] | None = None
    ) -> AbstractContextManager[tuple[int, Iterator[bytes]]]:
        """GET ``url`` from byte ``start``: a context manager yielding ``(offset, chunks)``.

        ``offset`` is the byte the chunks begin at: ``start`` when the server honoured the range, 0 when
        it sent the whole file. Raise :class:`ConnectionError` (or :class:`TimeoutError`) when the
        connection fails or drops, before or during the chunks: the pull then resumes from the bytes it
        has. Raise a :class:`corral.errors.CorralError` for answers that retrying cannot fix (not found,
        no access). The default uses the standard library; plugins use their hub client's session.
        """
        return open_url_range(url, start=start, headers=headers)

    def finish(self, transfer: Transfer) -> Path:
        """Called once the verified file is at ``transfer.target``; returns the path it shows under.

        A hub cache links its snapshot entry here. The default returns ``link`` or ``target``.
        """
        return transfer.link or transfer.target


# --- the standard-library transport ---------------------------------------------------------------------


@contextlib.contextmanager
def open_url_range(
    url: str, *, start: int = 0, headers: Mapping[str, str] | None = None
) -> Iterator[tuple[int, Iterator[bytes]]]:
    """GET ``url`` from byte ``start`` with urllib (the :meth:`Source.open_range` default)."""
    import http.client
    import urllib.error
    import urllib.request

    wanted = {"Accept-Encoding": "identity", **dict(headers or {})}
    if start:
        wanted["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=wanted)
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise ConnectionError(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise ConnectionError(str(getattr(exc, "reason", exc))) from None

    def chunks() -> Iterator[bytes]:
        try:
            while True:
                block = response.read1(1024 * 1024)
                if not block:
                    return
                yield block
        except (http.client.HTTPException, OSError) as exc:
            raise ConnectionError(f"connection dropped: {exc!r}") from None

    with response:
        yield (start if response.status == 206 else 0), chunks()
