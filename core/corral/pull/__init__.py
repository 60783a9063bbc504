"""Downloads from model hubs, shared by every download-source plugin.

A hub plugin (:class:`corral.driver.Source`) says what a repository holds (:meth:`~Source.snapshot`),
where each file comes from and lands (:meth:`~Source.transfers`) and how to open a byte range
(:meth:`~Source.open_range`). This package does the rest, the same for every hub:

* :mod:`~corral.pull.refs`: ``org/name``, ``org/name:branch`` and hub links;
* :mod:`~corral.pull.variants`: GGUF quantizations, split files, projectors; which files a pull takes;
* :mod:`~corral.pull.names`: refusing absolute and ``..`` file names;
* :mod:`~corral.pull.fetch`: the disk-space check and resumable, verified transfers;
* :mod:`~corral.pull.adopt`: adding the result to the library with its provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from attrs import frozen

from corral import known
from corral.driver import Progress, Source
from corral.errors import CorralError, PluginMissing
from corral.pull.adopt import Adoption, adopt
from corral.pull.errors import DownloadError, IntegrityError, NoSpace, Paused, UnsafeName
from corral.pull.fetch import CallbackMeter, Meter, check_space, fetch_all, human_bytes, open_url_range
from corral.pull.names import check_names, inside
from corral.pull.refs import DEFAULT_SOURCE, PullRef, parse_ref
from corral.pull.variants import Variant, gguf_variants, quant_of, select_files
from corral.records import Lora, Model, RemoteFile, Snapshot, Transfer

__all__ = [
    "DEFAULT_SOURCE",
    "Adoption",
    "CallbackMeter",
    "DownloadError",
    "IntegrityError",
    "Meter",
    "NoSpace",
    "Paused",
    "PullRef",
    "PullResult",
    "UnsafeName",
    "Variant",
    "download",
    "check_offline",
    "get_source",
    "gguf_variants",
    "open_url_range",
    "parse_ref",
    "pull",
    "quant_of",
    "select_files",
]


@frozen
class PullResult:
    """What a pull did: the files it took, how many bytes it fetched, what the library gained."""

    source: str
    repo: str
    revision: str | None
    commit: str | None
    files: tuple[str, ...]
    paths: tuple[Path, ...]
    fetched: int = 0
    reused: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    models: tuple[Model, ...] = ()
    existing: tuple[Model, ...] = ()
    loras: tuple[Lora, ...] = ()
    offers: tuple[str, ...] = ()


def get_source(host, name: str) -> Source:
    """The registered hub called ``name``, ready to use, or the plugin to install for it."""
    cls = host.source(name)
    if cls is None:
        if name in known.SOURCES:
            dist = known.SOURCES[name]
            raise PluginMissing(f"the {name} hub needs the {dist} plugin: pip install {dist}", distribution=dist)
        installed = ", ".join(s.name for s in host.sources) or "none"
        raise PluginMissing(f"no installed plugin provides a hub called {name!r} (installed hubs: {installed})")
    # find_spec alone: the full environment check also looks up versions, which scans every installed
    # distribution's file list (seconds), and a hub command needs to know only that the client is there.
    if not all(_importable(module) for module in cls.requires):
        status = cls.check()
        if not status.available:
            raise PluginMissing(f"the {name} hub is not usable ({status.problem}); fix: {status.install}")
    return cls()


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def plan(source: Source, snapshot: Snapshot, files: Sequence[RemoteFile], dest: Path | None) -> list[Transfer]:
    """The checked transfers for ``files``: safe names, every target under ``dest`` when one is given."""
    check_names([f.name for f in files], f"{snapshot.repo} on {snapshot.source}")
    transfers = source.transfers(snapshot, files, dest=dest)
    if len(transfers) != len(files):
        raise DownloadError(f"the {source.name} plugin planned {len(transfers)} transfers for {len(files)} files")
    if dest is not None:
        for t in transfers:
            inside(dest, t.file.name)
            if dest.resolve() not in t.target.resolve().parents:
                raise UnsafeName(f"{t.target} is outside {dest}; refusing to write it")
    return transfers


def check_offline(transfers: Sequence[Transfer], repo: str) -> None:
    """Refuse an offline pull of files that are not in the local cache yet."""
    missing = [t.file.name for t in transfers if t.url is not None and not t.target.exists()]
    if missing:
        raise CorralError(
            f"offline: {len(missing)} file(s) of {repo} are not in the local cache "
            f"({', '.join(missing[:3])}); go online or drop --offline"
        )


def pull(
    library,
    source: Source,
    repo: str,
    *,
    revision: str | None = None,
    names: Sequence[str] = (),
    quant: str | None = None,
    everything: bool = False,
    mmproj: bool = True,
    dest: Path | None = None,
    offline: bool = False,
    name: str | None = None,
    base: str | None = None,
    meter: Meter | None = None,
    listed: Snapshot | None = None,
) -> PullResult:
    """Download files of ``repo`` from ``source`` and add the model to ``library`` with its provenance.

    Lists the repository (pinned to one commit), chooses the files (:func:`select_files`), refuses
    unsafe names, checks free disk space, fetches each file resumably and verifies it, then detects and
    adds the result. Ctrl-C raises :class:`Paused`; running the same pull again resumes. ``listed``: the
    repository as a caller just listed it (a pull job, checked when it was asked for), not listed again.
    """
    meter = meter or Meter()
    snapshot = listed if listed is not None else source.snapshot(repo, revision, offline=offline)
    files = select_files(snapshot, names=names, quant=quant, everything=everything, mmproj=mmproj)
    if not files:
        raise CorralError(f"{repo} on {source.name} has no files to download")
    if dest is not None:
        dest = Path(dest).expanduser().resolve()
    transfers = plan(source, snapshot, files, dest)
    version = snapshot.commit or snapshot.revision
    if offline:
        check_offline(transfers, repo)
    check_space(transfers, version)
    outcomes = fetch_all(source, transfers, meter, version)
    paths = [source.finish(t) for t in transfers]
    adoption = adopt(library, snapshot, list(zip(files, paths)), name=name, base=base)
    return PullResult(
        source=source.name,
        repo=snapshot.repo,
        revision=snapshot.revision,
        commit=snapshot.commit,
        files=tuple(f.name for f in files),
        paths=tuple(paths),
        fetched=sum(o.fetched for o in outcomes),
        reused=tuple(o.transfer.file.name for o in outcomes if o.reused),
        resumed=tuple(o.transfer.file.name for o in outcomes if o.resumed_from),
        models=adoption.models,
        existing=adoption.existing,
        loras=adoption.loras,
        offers=adoption.offers,
    )


def download(
    source: Source,
    repo: str,
    files: Sequence[RemoteFile],
    *,
    revision: str | None,
    dest: Path | None,
    progress: Progress | None = None,
) -> list[Path]:
    """:meth:`Source.download`: fetch ``files`` resumably, verify them, and return their paths."""
    snapshot = Snapshot(source=source.name, repo=repo, revision=revision, commit=revision, files=tuple(files))
    if dest is not None:
        dest = Path(dest).expanduser().resolve()
    transfers = plan(source, snapshot, files, dest)
    check_space(transfers, revision)
    fetch_all(source, transfers, CallbackMeter(progress), revision)
    return [source.finish(t) for t in transfers]


def describe(result: PullResult) -> str:
    """One line on what a pull fetched."""
    parts = [f"{len(result.files)} file(s)", f"{human_bytes(result.fetched)} fetched"]
    if result.reused:
        parts.append(f"{len(result.reused)} already here")
    if result.resumed:
        parts.append(f"{len(result.resumed)} resumed")
    at = result.commit or result.revision
    return f"Pulled {result.repo} from {result.source}{f' @ {at}' if at else ''}: " + ", ".join(parts)
