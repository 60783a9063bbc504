"""The Hugging Face Hub as a Corral download source, through huggingface_hub.

Listing and search go through ``HfApi``; file bytes come through huggingface_hub's own HTTP session (its
proxies, headers and token), fetched by :mod:`corral.pull` so that partial files survive across runs and
every LFS file is checked against its sha256. Environment variables are read at call time: HF_ENDPOINT,
HF_TOKEN, HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from corral.api import Source
from corral.api import CorralError, NotFound
from corral.api import Category, RemoteFile, RepoSummary, Snapshot, Transfer
from corral_huggingface import cache

DEFAULT_ENDPOINT = "https://huggingface.co"

#: Corral's search categories as Hub pipeline tags (a category may span several tags).
CATEGORY_TAGS: dict[str, tuple[str, ...]] = {
    "chat": ("text-generation",),
    "text-generation": ("text-generation",),
    "multimodal": ("image-text-to-text",),
    "embedding": ("sentence-similarity", "feature-extraction"),
    "rerank": ("text-ranking",),
    "image": ("text-to-image",),
    "text-to-image": ("text-to-image",),
    "video": ("text-to-video",),
    "tts": ("text-to-speech",),
    "speech-to-text": ("automatic-speech-recognition",),
}
TAG_CATEGORIES = {
    "text-generation": Category.CHAT,
    "image-text-to-text": Category.MULTIMODAL,
    "sentence-similarity": Category.EMBEDDING,
    "feature-extraction": Category.EMBEDDING,
    "text-ranking": Category.RERANK,
    "text-to-image": Category.IMAGE,
    "text-to-speech": Category.TTS,
}
EXPAND = ["downloads", "likes", "pipeline_tag", "tags", "usedStorage"]


def endpoint() -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it once, at import)."""
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        from huggingface_hub import constants

        value = constants.ENDPOINT
    return (value or DEFAULT_ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    """HF_HUB_OFFLINE as set now, or as huggingface_hub read it at import."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def token() -> str | None:
    """HF_TOKEN, else the token ``hf auth login`` saved."""
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def _httpx():
    try:
        import httpx2 as httpx  # huggingface_hub 2.x
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx
    return httpx


@contextlib.contextmanager
def hub_errors(repo: str, revision: str | None = None, *, search: bool = False) -> Iterator[None]:
    """huggingface_hub's exceptions as one clear Corral error each (``search``: for a search, which only
    the hub can answer, so the hint names the commands that work offline instead of an option)."""
    from huggingface_hub import errors

    httpx = _httpx()
    where = endpoint()
    try:
        yield
    except errors.GatedRepoError:
        raise NotFound(f"{repo} is gated on Hugging Face: accept its terms on {where}/{repo} and set HF_TOKEN") from None
    except errors.RevisionNotFoundError:
        raise NotFound(f"{repo} has no revision {revision!r} on Hugging Face; see its branches on {where}/{repo}") from None
    except errors.RemoteEntryNotFoundError:
        raise NotFound(f"{repo}: a file is missing on Hugging Face at {revision or 'main'}") from None
    except errors.RepositoryNotFoundError:
        raise NotFound(
            f"{repo}: no such repository on Hugging Face ({where}), or it is private: "
            f"set HF_TOKEN to a token that can read it"
        ) from None
    except errors.OfflineModeIsEnabled:
        if search:
            raise CorralError("HF_HUB_OFFLINE is set, and searching needs the hub: unset HF_HUB_OFFLINE to search; "
                              "offline, `corral files REPO` and `corral pull REPO` answer from the cache") from None
        raise CorralError(f"HF_HUB_OFFLINE is set: {repo} can only come from the local cache "
                          f"(`corral files {repo} --offline`, `corral pull {repo} --offline`)") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise CorralError(f"Hugging Face answered HTTP {status} for {repo}; try again later") from None
    except (httpx.TransportError, OSError) as exc:
        offline = ("searching needs the hub; `corral files REPO --offline` and `corral pull REPO --offline` "
                   "answer from the cache" if search else "or add --offline for files already in the cache")
        raise CorralError(
            f"cannot reach Hugging Face at {where} ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT; "
            f"{offline}"
        ) from None


class HuggingFaceSource(Source):
    """Search, list and pull models from the Hugging Face Hub (or any HF_ENDPOINT mirror)."""

    name = "huggingface"
    distribution = "corral-huggingface"
    requires = ("huggingface_hub",)
    url_prefixes = ("https://huggingface.co/", "https://hf.co/", "huggingface.co/", "hf.co/", "hf://")

    @classmethod
    def link_prefixes(cls) -> tuple[str, ...]:
        configured = os.environ.get("HF_ENDPOINT", "").rstrip("/")
        return cls.url_prefixes + ((configured + "/",) if configured else ())

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=endpoint(), token=token())

    # --- search and listing -----------------------------------------------------------------------

    def search(self, query: str, *, category: Category | str | None = None, limit: int = 20) -> list[RepoSummary]:
        tags: tuple[str | None, ...] = (None,)
        if category is not None:
            tags = CATEGORY_TAGS.get(str(category), ())
            if not tags:
                raise CorralError(f"Hugging Face search has no category {str(category)!r}")
        hits: dict[str, Any] = {}
        with hub_errors(query, search=True):
            api = self._api()
            for tag in tags:
                for info in api.list_models(search=query, pipeline_tag=tag, sort="downloads", limit=limit, expand=EXPAND):
                    hits.setdefault(info.id, info)
        ranked = sorted(hits.values(), key=lambda m: -(m.downloads or 0))[:limit]
        return [
            RepoSummary(
                repo=m.id,
                source=self.name,
                downloads=m.downloads,
                likes=m.likes,
                size=m.used_storage,
                tags=tuple(m.tags or ()),
                category=TAG_CATEGORIES.get(m.pipeline_tag or ""),
            )
            for m in ranked
        ]

    def files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        return list(self.snapshot(repo, revision).files)

    def snapshot(self, repo: str, revision: str | None = None, *, offline: bool = False) -> Snapshot:
        """The repository at ``revision`` (default ``main``), pinned to its commit; from the cache offline."""
        url = f"{endpoint()}/{repo}"
        if offline or offline_mode():
            return cache.offline_snapshot(repo, revision, url)
        with hub_errors(repo, revision):
            info = self._api().model_info(repo, revision=revision, files_metadata=True)
        files = tuple(
            RemoteFile(
                name=s.rfilename,
                size=s.lfs.size if s.lfs is not None else s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
            for s in info.siblings or ()
        )
        return Snapshot(source=self.name, repo=info.id or repo, revision=revision or "main", commit=info.sha,
                        files=files, url=f"{endpoint()}/{info.id or repo}")  # fmt: skip

    # --- downloads ---------------------------------------------------------------------------------

    def transfers(self, snapshot: Snapshot, files: Sequence[RemoteFile], *, dest: Path | None) -> list[Transfer]:
        """Into ``dest``, or into the Hugging Face cache (blob named by etag, linked into the snapshot)."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        from corral.api import inside

        revision = snapshot.commit or snapshot.revision or "main"
        headers = dict(build_hf_headers(token=token(), library_name="corral"))
        out = []
        if dest is None and snapshot.commit:
            cache.remember_ref(snapshot.repo, snapshot.revision, snapshot.commit)
        for f in files:
            url = hf_hub_url(snapshot.repo, f.name, revision=revision, endpoint=endpoint())
            if dest is not None:
                out.append(Transfer(file=f, target=inside(dest, f.name), url=url, headers=headers))
                continue
            entry = inside(cache.repo_dir(snapshot.repo) / "snapshots" / revision, f.name)
            etag = f.sha256 or f.blob_id
            if entry.is_file():
                out.append(Transfer(file=f, target=entry, cached=True))
            elif etag is None:
                out.append(Transfer(file=f, target=entry, url=url, headers=headers))
            else:
                blob = cache.blob(snapshot.repo, etag)
                out.append(Transfer(file=f, target=blob, url=url, headers=headers, cached=True, link=entry))
        return out

    def finish(self, transfer: Transfer) -> Path:
        if transfer.link is not None:
            cache.link(transfer.target, transfer.link)
            return transfer.link
        return transfer.target

    @contextlib.contextmanager
    def open_range(
        self, url: str, *, start: int = 0, headers: Mapping[str, str] | None = None
    ) -> Iterator[tuple[int, Iterator[bytes]]]:
        """GET through huggingface_hub's session; redirects to a CDN are followed without the token."""
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session, hf_raise_for_status

        httpx = _httpx()
        wanted = {**dict(headers or {}), "Accept-Encoding": "identity"}
        if start:
            wanted["Range"] = f"bytes={start}-"
        timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
        try:
            with get_session().stream("GET", url, headers=wanted, follow_redirects=True, timeout=timeout) as response:
                status = response.status_code
                if status in (408, 425, 429) or status >= 500:
                    raise ConnectionError(f"Hugging Face answered HTTP {status}")
                if status >= 400:
                    response.read()
                    with hub_errors(url):
                        hf_raise_for_status(response)
                yield (start if status == 206 else 0), _chunks(response, httpx)
        except httpx.TransportError as exc:
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from None


def _chunks(response, httpx) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except httpx.TransportError as exc:
        raise ConnectionError(f"connection dropped ({type(exc).__name__}: {exc})") from None
