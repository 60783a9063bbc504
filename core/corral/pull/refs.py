"""What ``corral pull`` accepts: ``user/model``, ``user/model:branch``, or a hub link.

A link is matched against each installed source's :meth:`~corral.driver.Source.link_prefixes`; what
follows the prefix is read the way hubs build their pages: ``org/name``, ``models/org/name`` (ModelScope),
then ``/tree/REV``, ``/blob/REV/FILE``, ``/resolve/REV/FILE`` or ``/file/view/REV/FILE``.
"""

from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote

from attrs import frozen

from corral import known
from corral.driver import Source
from corral.errors import CorralError, PluginMissing

DEFAULT_SOURCE = "huggingface"

#: Hub hosts Corral knows, so a link to a hub whose plugin is missing names the plugin to install.
KNOWN_HOSTS = {
    "huggingface.co": "huggingface",
    "hf.co": "huggingface",
    "modelscope.cn": "modelscope",
    "modelscope.ai": "modelscope",
}

_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")


@frozen
class PullRef:
    """A repository on a hub, maybe at a revision, maybe naming files (a link to one file)."""

    source: str
    repo: str
    revision: str | None = None
    files: tuple[str, ...] = ()


def check_repo(repo: str, ref: str | None = None) -> str:
    """``repo`` when it reads ``org/name``; anything else is a clear error (never a request to the hub)."""
    if not REPO_RE.match(repo) or ".." in repo:
        raise CorralError(f"{ref or repo!r} is not a hub repository; write it as org/name, org/name:branch or a hub link")
    return repo


def parse_ref(ref: str, sources: Iterable[type[Source]], source: str | None = None) -> PullRef:
    """Read ``ref`` into a :class:`PullRef`; ``source`` is the ``--source`` the user gave, if any."""
    text = ref.strip()
    matches = [(p, cls) for cls in sources for p in cls.link_prefixes() if p and text.lower().startswith(p.lower())]
    if matches:
        # The longest prefix names the hub; two hubs configured on one endpoint go to --source, else the default.
        wanted = source or DEFAULT_SOURCE
        prefix, cls = max(matches, key=lambda pc: (len(pc[0]), pc[1].name == wanted))
        chosen = [pc for pc in matches if pc[1].name == source] if source else []
        if source is not None and not chosen:
            raise CorralError(f"{ref} is a {cls.name} link, but --source {source} was given")
        if chosen:
            prefix, cls = max(chosen, key=lambda pc: len(pc[0]))
        return _parse_link(text[len(prefix) :], cls.name, ref)
    hub = _known_host(text)
    if "://" in text or hub is not None:
        if hub is not None:
            dist = known.source_distribution(hub)
            raise PluginMissing(f"{ref} is a {hub} link; it needs the {dist} plugin: pip install {dist}", distribution=dist)
        raise CorralError(f"no installed hub plugin recognises the link {ref}; see `corral plugins`")
    repo, _, revision = text.partition(":")
    return PullRef(source or DEFAULT_SOURCE, check_repo(repo, ref), revision or None)


def _known_host(text: str) -> str | None:
    host = re.sub(r"^[a-z]+://", "", text.lower()).split("/", 1)[0]
    host = host.removeprefix("www.")
    return KNOWN_HOSTS.get(host)


def _parse_link(rest: str, source: str, ref: str) -> PullRef:
    rest = rest.split("?", 1)[0].split("#", 1)[0].strip("/")
    parts = [unquote(p) for p in rest.split("/") if p]
    if parts[:1] == ["models"] and len(parts) >= 3:
        parts = parts[1:]
    if len(parts) < 2:
        raise CorralError(f"{ref}: the link names no repository (expected .../org/name)")
    repo, tail = check_repo(f"{parts[0]}/{parts[1]}", ref), parts[2:]
    revision, path = None, []
    if tail[:1] in (["tree"], ["blob"], ["resolve"]) and len(tail) >= 2:
        revision, path = tail[1], tail[2:]
    elif tail[:2] in (["file", "view"], ["file", "resolve"]) and len(tail) >= 3:
        revision, path = tail[2], tail[3:]
    elif tail and tail[0] not in ("files", "summary", "tree", "discussions", "commits"):
        raise CorralError(f"{ref}: Corral cannot tell what this link points at; give org/name[:revision]")
    return PullRef(source, repo, revision, ("/".join(path),) if path else ())
