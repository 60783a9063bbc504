"""A local HTTP server speaking the parts of the Hugging Face and ModelScope APIs that the real
``huggingface_hub`` and ``modelscope`` clients call, over the repositories of :mod:`fakehub.repos`.

Hugging Face: ``GET /api/models`` (search), ``GET /api/models/{repo}[/revision/{rev}]`` (info, ``blobs``),
``GET /api/models/{repo}/tree/{rev}[/{path}]``, ``HEAD|GET /{repo}/resolve/{rev}/{path}``.
ModelScope: ``GET /openapi/v1/models`` (search), ``GET /openapi/v1/models/{repo}``,
``GET /api/v1/models/{repo}``, ``.../revisions``, ``.../repo/files``, ``HEAD|GET .../repo?FilePath=``.

File bodies honour ``Range: bytes=N-``. Switches make it misbehave on purpose: ``cut`` closes the
connection at a byte offset, ``stall`` stops sending at an offset until released, ``throttle`` sends at
most so many bytes a second, ``bad_sha`` lists a wrong sha256. It counts every body byte it sends, per file, so tests can prove what was fetched again.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from fakehub.repos import TOKEN, Entry, Repo

WRONG_SHA = "0" * 64
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Stall:
    at: int
    release: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)


@dataclass
class Served:
    """One body the server sent: which file, from which byte, how many bytes."""

    repo: str
    path: str
    start: int
    sent: int


class State:
    """Switches and counters, shared by the handler threads."""

    def __init__(self, repos: dict[str, Repo]) -> None:
        self.repos = repos
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.cuts: dict[tuple[str, str], list[int | None]] = {}  # (repo, path) -> [offset, times left]
            self.stalls: dict[tuple[str, str], Stall] = {}
            self.bad_sha: set[tuple[str, str]] = set()
            self.throttles: dict[tuple[str, str], int] = {}  # (repo, path) -> bytes per second
            self.served: list[Served] = []
            self.requests: list[tuple[str, str]] = []

    def sha_of(self, repo: str, entry: Entry) -> str:
        return WRONG_SHA if (repo, entry.path) in self.bad_sha else entry.sha256

    def bytes_served(self, repo: str | None = None, path: str | None = None) -> int:
        with self.lock:
            return sum(s.sent for s in self.served if repo in (None, s.repo) and path in (None, s.path))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakehub/1"
    timeout = 60

    # --- plumbing ----------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.path.startswith("/_fake/reset"):
            self.state.reset()
            return self._json({"ok": True})
        self._json({"error": "not found"}, 404)

    def _dispatch(self, head: bool) -> None:
        split = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        self.query_all = parse_qs(split.query)
        parts = [unquote(p) for p in split.path.split("/")[1:]]
        with self.state.lock:
            self.state.requests.append((self.command, self.path))
        try:
            self._route(parts, head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        cookie = self.headers.get("Cookie", "")
        return auth == f"Bearer {TOKEN}" or f"m_session_id={TOKEN}" in cookie

    def _json(self, data, status: int = 200, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _hf_error(self, status: int, code: str, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json({"error": message}, status, headers)

    def _repo(self, org: str, name: str) -> Repo | None:
        repo = self.state.repos.get(f"{org}/{name}")
        if repo is not None and repo.private and not self._authorized():
            return None
        return repo

    # --- routes --------------------------------------------------------------------------------------

    def _route(self, parts: list[str], head: bool) -> None:
        if parts[:1] == ["_fake"]:
            return self._json({"served": [s.__dict__ for s in self.state.served]})
        if parts[:2] == ["api", "models"]:
            return self._hf_api(parts[2:])
        if parts[:3] == ["openapi", "v1", "models"]:
            return self._ms_openapi(parts[3:])
        if parts[:3] == ["api", "v1", "models"]:
            return self._ms_legacy(parts[3:])
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._hf_resolve(parts)
        self._json({"error": f"no route {self.path}"}, 404)

    # --- Hugging Face ---------------------------------------------------------------------------------

    def _hf_model(self, repo: Repo, commit: str | None, blobs: bool) -> dict:
        data = {
            "id": repo.id,
            "modelId": repo.id,
            "author": repo.id.split("/")[0],
            "downloads": repo.downloads,
            "likes": repo.likes,
            "tags": repo.tags,
            "pipeline_tag": repo.pipeline_tag,
            "private": repo.private,
            "gated": False,
            "usedStorage": repo.used_storage(),
            "lastModified": "2025-01-01T00:00:00.000Z",
        }
        if commit is not None:
            data["sha"] = commit
            siblings = []
            for entry in repo.commits[commit].values():
                item: dict = {"rfilename": entry.path}
                if blobs:
                    item.update(size=entry.api_size, blobId=entry.git_oid)
                    if entry.lfs:
                        item["lfs"] = {"sha256": self.state.sha_of(repo.id, entry), "size": entry.api_size,
                                       "pointerSize": 134}  # fmt: skip
                siblings.append(item)
            data["siblings"] = siblings
        return data

    def _hf_api(self, rest: list[str]) -> None:
        if not rest:
            return self._hf_search()
        if len(rest) < 2:
            return self._hf_error(404, "RepoNotFound", "Repository not found")
        repo = self._repo(rest[0], rest[1])
        if repo is None:
            return self._hf_error(401, "RepoNotFound", "Repository not found")
        tail = rest[2:]
        if not tail or tail[0] == "revision":
            revision = "/".join(tail[1:]) if tail else "main"
            commit = repo.commit_of(revision)
            if commit is None:
                return self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return self._json(self._hf_model(repo, commit, self.query.get("blobs") in ("true", "True", "1")))
        if tail[0] == "tree" and len(tail) >= 2:
            commit = repo.commit_of(tail[1])
            if commit is None:
                return self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {tail[1]}")
            prefix = "/".join(tail[2:])
            recursive = self.query.get("recursive") in ("true", "True", "1")
            return self._json(self._hf_tree(repo, commit, prefix, recursive))
        self._hf_error(404, "EntryNotFound", "no such route")

    def _hf_tree(self, repo: Repo, commit: str, prefix: str, recursive: bool) -> list[dict]:
        out, folders = [], set()
        base = prefix + "/" if prefix else ""
        for entry in repo.commits[commit].values():
            if not entry.path.startswith(base):
                continue
            rest = entry.path[len(base):]
            if "/" in rest and not recursive:
                folders.add(base + rest.split("/")[0])
                continue
            item = {"type": "file", "oid": entry.git_oid, "size": entry.api_size, "path": entry.path}
            if entry.lfs:
                item["lfs"] = {"oid": self.state.sha_of(repo.id, entry), "size": entry.api_size, "pointerSize": 134}
            out.append(item)
        out += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": f} for f in sorted(folders)]
        return out

    def _hf_search(self) -> None:
        query = self.query.get("search", "").lower()
        tag = self.query.get("pipeline_tag")
        hits = [
            r for r in self.state.repos.values()
            if query in r.id.lower() and (tag is None or r.pipeline_tag == tag) and (not r.private or self._authorized())
        ]  # fmt: skip
        if self.query.get("sort") == "downloads":
            hits.sort(key=lambda r: -r.downloads)
        limit = int(self.query.get("limit") or 1000)
        self._json([self._hf_model(r, None, False) for r in hits[:limit]])

    def _hf_resolve(self, parts: list[str]) -> None:
        repo = self._repo(parts[0], parts[1])
        if repo is None:
            return self._hf_error(401, "RepoNotFound", "Repository not found")
        commit = repo.commit_of(parts[3])
        if commit is None:
            return self._hf_error(404, "RevisionNotFound", f"Invalid rev id: {parts[3]}")
        path = "/".join(parts[4:])
        entry = repo.commits[commit].get(path)
        if entry is None:
            return self._hf_error(404, "EntryNotFound", f"{path} does not exist", commit)
        headers = {"X-Repo-Commit": commit, "ETag": f'"{entry.git_oid}"'}
        if entry.lfs:
            sha = self.state.sha_of(repo.id, entry)
            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(entry.api_size), "ETag": f'"{sha}"'})
        self._send_file(repo.id, entry, headers)

    # --- ModelScope -----------------------------------------------------------------------------------

    def _ms_model(self, repo: Repo) -> dict:
        org, name = repo.id.split("/")
        return {"id": repo.id, "owner": org, "name": name, "display_name": name, "downloads": repo.downloads,
                "likes": repo.likes, "tags": repo.tags, "tasks": [repo.ms_task] if repo.ms_task else [],
                "file_size": repo.used_storage(), "private": repo.private}  # fmt: skip

    def _ms_openapi(self, rest: list[str]) -> None:
        if not rest:
            query = (self.query.get("search") or "").lower()
            task = self.query.get("filter.task")
            hits = [
                r for r in self.state.repos.values()
                if query in r.id.lower() and (task is None or r.ms_task == task) and (not r.private or self._authorized())
            ]  # fmt: skip
            hits.sort(key=lambda r: -r.downloads)
            size = int(self.query.get("page_size") or 10)
            page = int(self.query.get("page_number") or 1)
            items = hits[(page - 1) * size : page * size]
            data = {"models": [self._ms_model(r) for r in items], "total_count": len(hits),
                    "page_number": page, "page_size": size}  # fmt: skip
            return self._json({"success": True, "data": data})
        repo = self._repo(rest[0], rest[1]) if len(rest) >= 2 else None
        if repo is None:
            return self._json({"success": False, "code": "NotFound", "message": "model not found"}, 404)
        self._json({"success": True, "data": self._ms_model(repo)})

    def _ms_fail(self, status: int, message: str) -> None:
        self._json({"Code": status, "Success": False, "Message": message}, status)

    def _ms_legacy(self, rest: list[str]) -> None:
        if len(rest) < 2:
            return self._ms_fail(404, "model not found")
        repo = self.state.repos.get(f"{rest[0]}/{rest[1]}")
        if repo is None:
            return self._ms_fail(404, "model not found")
        if repo.private and not self._authorized():
            return self._ms_fail(401, "login required")
        tail = rest[2:]
        if not tail:
            return self._json({"Code": 200, "Success": True, "Data": self._ms_model(repo)})
        if tail == ["revisions"]:
            now = int(time.time()) - 3600
            branches = [{"Revision": b, "CreatedAt": now, "CommitId": c} for b, c in repo.refs.items() if b != "main"]
            return self._json({"Code": 200, "Success": True, "Data": {"RevisionMap": {"Branches": branches, "Tags": []}}})
        revision = self.query.get("Revision") or "master"
        commit = repo.commit_of(revision)
        if commit is None:
            return self._ms_fail(404, f"revision {revision} not found")
        if tail == ["repo", "files"]:
            files = [
                {"Name": e.path.rsplit("/", 1)[-1], "Path": e.path, "Size": e.api_size,
                 "Sha256": self.state.sha_of(repo.id, e), "Type": "blob", "Revision": commit, "IsLFS": e.lfs}
                for e in repo.commits[commit].values()
            ]  # fmt: skip
            return self._json({"Code": 200, "Success": True, "Data": {"Files": files}})
        if tail == ["repo"]:
            entry = repo.commits[commit].get(self.query.get("FilePath", ""))
            if entry is None:
                return self._ms_fail(404, "file not found")
            return self._send_file(repo.id, entry, {})
        self._ms_fail(404, "no such route")

    # --- file bodies -----------------------------------------------------------------------------------

    def _send_file(self, repo: str, entry: Entry, headers: dict[str, str]) -> None:
        size = entry.size
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            m = _RANGE_RE.match(wanted.strip())
            if m is None or int(m[1]) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end, status = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1), 206
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        key = (repo, entry.path)
        with self.state.lock:
            cut = self.state.cuts.get(key)
            stop = end + 1
            if cut is not None and cut[0] is not None and start <= cut[0] <= end:
                stop = cut[0]
                if cut[1] is not None:
                    cut[1] -= 1
                    if cut[1] <= 0:
                        del self.state.cuts[key]
            stall = self.state.stalls.get(key)
            self.rate = self.state.throttles.get(key)
            record = Served(repo, entry.path, start, 0)
            self.state.served.append(record)
        self.wfile.flush()
        with open(entry.blob, "rb") as f:
            offset = start
            if stall is not None and start < stall.at < stop:
                offset = self._copy(f, offset, stall.at, record)
                stall.reached.set()
                stall.release.wait(120)
            self._copy(f, offset, stop, record)
        if stop <= end:
            self.close_connection = True  # the cut: the client sees a body shorter than Content-Length
            self.connection.shutdown(2)

    def _copy(self, f, offset: int, stop: int, record: Served) -> int:
        """Send bytes ``offset..stop`` of ``f`` with sendfile, counting them as they go."""
        rate = getattr(self, "rate", None)
        block = 4 * 1024 * 1024 if not rate else max(1, rate // 20)
        while offset < stop:
            sent = self.connection.sendfile(f, offset, min(stop - offset, block))
            if sent == 0:
                break
            offset += sent
            with self.state.lock:
                record.sent += sent
            if rate:
                time.sleep(sent / rate)
        return offset


class FakeHubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: State, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), Handler)
        self.state = state
