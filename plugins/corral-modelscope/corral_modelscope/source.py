"""ModelScope as a Corral download source, through the modelscope client (``modelscope_hub``).

Listing and search go through the client's ``HubApi``; file bytes are fetched by :mod:`corral.pull`
(resumable ``.part`` files, sha256 checks, names checked before anything is written: the client itself
joins listed names onto its folder unchecked). Settings are read at call time: MODELSCOPE_ENDPOINT (older
clients: MODELSCOPE_DOMAIN, with scheme), MODELSCOPE_API_TOKEN, MODELSCOPE_CACHE.

Files land where the modelscope client keeps them, so each reuses the other's downloads:
``{cache}/models/{owner}--{name}/snapshots/{revision}/``, or the older ``{cache}/models/{owner}/{name}``
layout when that folder already holds the repository.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from corral.api import Source
from corral.api import CorralError, NotFound
from corral.api import Category, RemoteFile, RepoSummary, Snapshot, Transfer

DEFAULT_REVISION = "master"

#: Corral's search categories as ModelScope task names.
CATEGORY_TASKS: dict[str, str] = {
    "chat": "text-generation",
    "text-generation": "text-generation",
    "multimodal": "multimodal-dialogue",
    "embedding": "sentence-embedding",
    "rerank": "text-ranking",
    "image": "text-to-image-synthesis",
    "text-to-image": "text-to-image-synthesis",
    "video": "text-to-video-synthesis",
    "tts": "text-to-speech",
    "speech-to-text": "auto-speech-recognition",
}
TASK_CATEGORIES = {
    "text-generation": Category.CHAT,
    "chat": Category.CHAT,
    "multimodal-dialogue": Category.MULTIMODAL,
    "sentence-embedding": Category.EMBEDDING,
    "text-ranking": Category.RERANK,
    "text-to-image-synthesis": Category.IMAGE,
    "text-to-speech": Category.TTS,
}


def config():
    """The client's configuration as the environment says now (endpoint, token, cache folder)."""
    from modelscope_hub import HubConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MODELSCOPE_DOMAIN still works; it only warns
        return HubConfig()


@contextlib.contextmanager
def hub_errors(repo: str, revision: str | None = None, *, search: bool = False) -> Iterator[None]:
    """The client's exceptions as one clear Corral error each (``search``: for a search, which only the hub
    can answer, so the hint names the commands that work offline instead of an option)."""
    from modelscope_hub import errors

    try:
        yield
    except errors.NotExistError:
        at = f" at revision {revision!r}" if revision else ""
        raise NotFound(f"{repo}{at}: not found on ModelScope ({config().endpoint})") from None
    except (errors.AuthenticationError, errors.PermissionDeniedError):
        raise NotFound(
            f"{repo}: ModelScope refused access; for a private model set MODELSCOPE_API_TOKEN to a token that can read it"
        ) from None
    except errors.NetworkError as exc:
        reason = str(exc).splitlines()[0]
        reason = reason if len(reason) <= 100 else reason[:97] + "..."
        offline = ("searching needs the hub; `corral files REPO --offline` and `corral pull REPO --offline` "
                   "answer from what is downloaded" if search else "or add --offline for files already downloaded")
        raise CorralError(
            f"cannot reach ModelScope at {config().endpoint} ({reason}); check the network or MODELSCOPE_ENDPOINT; "
            f"{offline}"
        ) from None
    except errors.HubError as exc:
        raise CorralError(f"ModelScope answered an error for {repo}: {str(exc).splitlines()[0]}") from None


def _owner_name(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    return owner, name


class ModelScopeSource(Source):
    """Search, list and pull models from ModelScope (modelscope.cn, or MODELSCOPE_ENDPOINT)."""

    name = "modelscope"
    distribution = "corral-modelscope"
    requires = ("modelscope", "modelscope_hub")
    url_prefixes = (
        "https://modelscope.cn/",
        "https://www.modelscope.cn/",
        "https://modelscope.ai/",
        "https://www.modelscope.ai/",
        "modelscope.cn/",
        "www.modelscope.cn/",
    )

    def __init__(self) -> None:
        self._session = None

    @classmethod
    def link_prefixes(cls) -> tuple[str, ...]:
        configured = os.environ.get("MODELSCOPE_ENDPOINT") or os.environ.get("MODELSCOPE_DOMAIN") or ""
        configured = configured.strip().rstrip("/")
        if configured and "://" not in configured:
            configured = "https://" + configured
        return cls.url_prefixes + ((configured + "/",) if configured else ())

    def _api(self, cfg=None):
        import logging

        from modelscope_hub import HubApi

        # The client logs each retry as a warning; Corral reports the outcome as one line instead.
        logging.getLogger("modelscope_hub").setLevel(logging.ERROR)
        return HubApi(config=cfg or config())

    # --- search and listing -----------------------------------------------------------------------

    def search(self, query: str, *, category: Category | str | None = None, limit: int = 20) -> list[RepoSummary]:
        filters = {}
        if category is not None:
            task = CATEGORY_TASKS.get(str(category))
            if task is None:
                raise CorralError(f"ModelScope search has no category {str(category)!r}")
            filters["task"] = task
        with hub_errors(query, search=True):
            page = self._api().list_repos("model", search=query, sort="downloads", page_size=min(limit, 50), **filters)
        hits = []
        for info in page.items[:limit]:
            tasks = tuple(info.tasks or ())
            hits.append(
                RepoSummary(
                    repo=info.repo_id or str(info.id),
                    source=self.name,
                    downloads=info.downloads,
                    likes=info.likes,
                    size=info.file_size,
                    tags=tuple(info.tags or ()) + tasks,
                    category=next((TASK_CATEGORIES[t] for t in tasks if t in TASK_CATEGORIES), None),
                )
            )
        return hits

    def files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        return list(self.snapshot(repo, revision).files)

    def snapshot(self, repo: str, revision: str | None = None, *, offline: bool = False) -> Snapshot:
        """The repository at ``revision`` (default ``master``); from the download folder offline."""
        cfg = config()
        revision = revision or DEFAULT_REVISION
        url = f"{cfg.endpoint}/models/{repo}"
        if offline:
            return self._offline_snapshot(repo, revision, url)
        with hub_errors(repo, revision):
            listed = self._api(cfg).list_repo_files(repo, "model", revision=revision, recursive=True)
        files = tuple(
            RemoteFile(name=f.path, size=f.size, sha256=(f.sha256 or None), blob_id=f.blob_id)
            for f in listed
            if not f.is_dir and f.path
        )
        return Snapshot(source=self.name, repo=repo, revision=revision, commit=None, files=files, url=url)

    def _offline_snapshot(self, repo: str, revision: str, url: str) -> Snapshot:
        root = self.folder(repo, revision)
        if not root.is_dir():
            raise NotFound(f"offline: {repo}@{revision} has not been downloaded from ModelScope ({root}); go online")
        files = tuple(
            RemoteFile(name=p.relative_to(root).as_posix(), size=p.stat().st_size)
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        return Snapshot(source=self.name, repo=repo, revision=revision, files=files, url=url)

    # --- downloads ---------------------------------------------------------------------------------

    def folder(self, repo: str, revision: str) -> Path:
        """Where the modelscope client keeps ``repo``: an older non-empty folder, else the snapshot one."""
        base = Path(config().cache_dir)
        owner, name = _owner_name(repo)
        safe = name.replace(".", "___")
        for legacy in (base / "models" / owner / safe, base / "hub" / "models" / owner / safe):
            if legacy.is_dir() and any(legacy.iterdir()):
                return legacy
        return base / "models" / f"{owner}--{name}" / "snapshots" / revision

    def transfers(self, snapshot: Snapshot, files: Sequence[RemoteFile], *, dest: Path | None) -> list[Transfer]:
        from corral.api import inside

        cfg = config()
        api = self._api(cfg)
        revision = snapshot.revision or DEFAULT_REVISION
        root = dest if dest is not None else self.folder(snapshot.repo, revision)
        headers = {}
        if cfg.token:
            headers = {"Authorization": f"Bearer {cfg.token}", "Cookie": f"m_session_id={cfg.token}"}
        out = []
        for f in files:
            url = api.legacy.get_download_url(snapshot.repo, "model", f.name, revision)
            out.append(Transfer(file=f, target=inside(root, f.name), url=url, headers=headers))
        return out

    @contextlib.contextmanager
    def open_range(
        self, url: str, *, start: int = 0, headers: Mapping[str, str] | None = None
    ) -> Iterator[tuple[int, Iterator[bytes]]]:
        """GET with requests (the client's transport); a redirect to storage drops the credentials."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        wanted = {**dict(headers or {}), "Accept-Encoding": "identity"}
        if start:
            wanted["Range"] = f"bytes={start}-"
        try:
            response = self._session.get(url, headers=wanted, stream=True, timeout=(15, 60))
        except requests.RequestException as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
        with response:
            status = response.status_code
            if status in (408, 425, 429) or status >= 500:
                raise ConnectionError(f"ModelScope answered HTTP {status}")
            if status in (401, 403):
                raise NotFound(f"ModelScope refused {url} (HTTP {status}); set MODELSCOPE_API_TOKEN for a private model")
            if status >= 400:
                raise NotFound(f"ModelScope has no file at {url} (HTTP {status})")
            yield (start if status == 206 else 0), _chunks(response)


def _chunks(response) -> Iterator[bytes]:
    import requests
    import urllib3

    raw = response.raw
    try:
        if not hasattr(raw, "read1"):  # urllib3 < 2.3
            yield from raw.stream(256 * 1024, decode_content=False)
            return
        while True:
            block = raw.read1(1024 * 1024, decode_content=False)  # what has arrived, without waiting for more
            if not block:
                return
            yield block
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise ConnectionError(f"connection dropped ({type(exc).__name__}: {exc})") from None
