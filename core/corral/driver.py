"""Base classes for what plugins register: drivers (load + infer), sources (download), exporters and GPU
vendors.

Capabilities are class attributes, so registering a class costs nothing: the backend library is imported
only inside :meth:`Driver.load`, :meth:`LoadedModel` methods, :meth:`Source.download`,
:meth:`Exporter.export` and :meth:`GpuVendor.probe`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import attrs

from corral.errors import CorralError
from corral.records import (
    BackendStatus,
    Category,
    Format,
    GpuInfo,
    LoraRequest,
    Model,
    RemoteFile,
    RepoSummary,
    SettingSpec,
    Snapshot,
    Transfer,
)

#: Progress callback for long work: ``progress(done, total, label)`` with byte or step counts.
Progress = Callable[[int, int | None, str], None]

#: What each category can be asked to do.
TASKS: Mapping[Category, frozenset[str]] = {
    Category.CHAT: frozenset({"chat", "complete"}),
    Category.MULTIMODAL: frozenset({"chat", "complete"}),
    Category.TEXT_GENERATION: frozenset({"chat", "complete"}),
    Category.EMBEDDING: frozenset({"embed"}),
    Category.RERANK: frozenset({"rerank"}),
    Category.IMAGE: frozenset({"imagine"}),
    Category.TTS: frozenset({"speak"}),
}


def backend_status(name: str, distribution: str, requires: Sequence[str]) -> BackendStatus:
    """Check that each import name in ``requires`` is installed, without importing it."""
    versions = []
    for module in requires:
        top = module.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return BackendStatus(
                name=name,
                available=False,
                problem=f"Python module {top!r} is not installed",
                install=f"pip install {distribution}",
            )
        versions.append(_module_version(top))
    version = next((v for v in versions if v), None)
    return BackendStatus(name=name, available=True, version=version)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> Mapping[str, list[str]]:
    # Walks every installed distribution's file list (seconds in a large environment): once per process.
    return importlib.metadata.packages_distributions()


def _module_version(module: str) -> str | None:
    for dist in _packages_distributions().get(module, [module]):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def torch_acceleration() -> tuple[str, ...]:
    """What torch can run on here: CUDA GPUs by name, Apple's MPS, the CPU.

    Imports torch: call it from ``Driver.check()`` (``corral env``), never at start-up.
    """
    import torch

    found = []
    if torch.cuda.is_available():
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        found.append("cuda: " + ", ".join(sorted(names)))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return tuple(found)


def torch_device(model_name: str, device: str | None) -> str:
    """The torch device to run on: the asked one after checking it exists here, else cuda, mps or cpu.

    Imports torch: call it while loading.
    """
    import torch

    from corral.errors import InvalidSetting

    mps = getattr(torch.backends, "mps", None)
    has_mps = mps is not None and mps.is_available()
    if device is None:
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind, _, index = device.partition(":")
    use_cpu = f"use the CPU: corral settings {model_name} --set device=cpu"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InvalidSetting(
                f"{model_name}: device {device} asked for, but torch {torch.__version__} sees no CUDA GPU; {use_cpu}"
            )
        if index and (not index.isdigit() or int(index) >= count):
            raise InvalidSetting(
                f"{model_name}: device {device} does not exist ({count} CUDA GPU(s): cuda:0..cuda:{count - 1})"
            )
    if kind == "mps" and not has_mps:
        raise InvalidSetting(f"{model_name}: device mps asked for, but this torch has no usable MPS; {use_cpu}")
    if kind in ("cpu", "mps") and index:
        raise InvalidSetting(f"{model_name}: device {device}: {kind} takes no index; use device={kind}")
    return device


def torch_threads(settings: Mapping[str, Any]) -> None:
    """Apply the ``threads`` setting (0: torch's default) to torch's CPU thread pool. The pool belongs to
    the process: with several torch models loaded, the last load's setting holds for all of them."""
    threads = int(settings.get("threads") or 0)
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def torch_memory(*modules: Any) -> dict[str, int]:
    """Bytes the weights and buffers of torch ``modules`` take on the host (``ram``) and on accelerators
    (``vram``); a tensor shared between modules counts once, offload placeholders on "meta" not at all."""
    ram = vram = 0
    seen: set[int] = set()
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) in seen or tensor.device.type == "meta":
                continue
            seen.add(id(tensor))
            size = tensor.numel() * tensor.element_size()
            if tensor.device.type == "cpu":
                ram += size
            else:
                vram += size
    return {"ram": ram, "vram": vram}


def free_torch_memory() -> None:
    """Give a dropped model's memory back now rather than at the next garbage collection (and the CUDA
    allocator's cache back to the GPU, when torch has touched one)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def drain(stream: Iterator[str]) -> tuple[list[str], Any]:
    """Read a streamed answer to its end: its pieces, and the :class:`~corral.records.ChatResult` the
    driver's generator returned (``None`` when it returns nothing)."""
    pieces: list[str] = []
    iterator = iter(stream)
    while True:
        try:
            pieces.append(next(iterator))
        except StopIteration as end:
            return pieces, end.value


class Unsupported(CorralError):
    """The loaded model cannot do the asked task."""

    exit_code = 10
    http_status = 400


class LoadedModel:
    """A live model held by a driver. Subclasses implement the tasks their category supports."""

    def __init__(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
        self.model = model
        self.settings = dict(settings)
        self.loras = tuple(loras)

    def _unsupported(self, task: str) -> Unsupported:
        return Unsupported(f"model {self.model.name!r} ({self.model.category}) cannot {task}")

    def chat(self, messages: Sequence[Mapping[str, Any]], *, stream: bool = False, **params: Any) -> Any:
        """Answer a conversation (OpenAI-style ``messages``).

        Returns a :class:`corral.records.ChatResult`; with ``stream=True``, an iterator of text pieces as
        they are generated. A generator may ``return`` a ``ChatResult`` with empty text once the answer is
        over: its ``finish_reason`` and token counts go into the server's last chunk and usage. Common ``params``: temperature, top_p, top_k, repeat_penalty, max_tokens,
        stop, seed; drivers ignore what their backend does not have.
        """
        raise self._unsupported("chat")

    def complete(self, prompt: str, *, stream: bool = False, **params: Any) -> Any:
        """Continue a plain prompt: a :class:`ChatResult`, or with ``stream=True`` an iterator of pieces."""
        raise self._unsupported("complete text")

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """One vector per text."""
        raise self._unsupported("embed")

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        """``(index, score)`` per document, best first."""
        raise self._unsupported("rerank")

    def imagine(self, prompt: str, **params: Any) -> list[Any]:
        """Generated images (PIL images) or video frames."""
        raise self._unsupported("generate images")

    def speak(self, text: str, **params: Any) -> tuple[Any, int]:
        """``(samples, sample_rate)`` of synthesised speech: float samples in [-1, 1], mono."""
        raise self._unsupported("speak")

    def memory(self) -> dict[str, int]:
        """What the loaded model really takes, in bytes: ``{"ram": ..., "vram": ...}``."""
        return {}

    def unload(self) -> None:
        """Free the model's memory. Called once; the handle is not used afterwards."""


class Driver:
    """Loads models of some categories and formats with one backend library."""

    #: Short name shown in ``corral plugins`` and ``corral env``.
    name: ClassVar[str] = ""
    #: The distribution users install to get this driver (used in "install ..." messages).
    distribution: ClassVar[str] = ""
    categories: ClassVar[frozenset[Category]] = frozenset()
    formats: ClassVar[frozenset[Format]] = frozenset()
    #: Import names of the backend libraries (checked without importing them).
    requires: ClassVar[tuple[str, ...]] = ()
    #: How many LoRAs one load may carry: 0 none, 1 one, None any number.
    max_loras: ClassVar[int | None] = 0
    #: Load settings this driver reads from ``corral settings``.
    settings: ClassVar[tuple[SettingSpec, ...]] = ()
    #: Higher wins when several drivers match a model (see the ``select_driver`` hook).
    priority: ClassVar[int] = 0

    @classmethod
    def handles(cls, model: Model) -> bool:
        return model.category in cls.categories and model.format in cls.formats

    @classmethod
    def check(cls) -> BackendStatus:
        """Environment check: is the backend importable, at which version, with which acceleration.

        The default only looks for the ``requires`` modules; override to report acceleration (that may
        import the backend: it runs for ``corral env``, never at start-up).
        """
        return backend_status(cls.name, cls.distribution, cls.requires)

    def load(
        self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()
    ) -> LoadedModel:
        """Load ``model`` with its saved ``settings`` and the asked LoRAs; return the live handle."""
        raise NotImplementedError


class TorchDriver(Driver):
    """A driver whose backend runs on torch: its environment check also lists what torch can use here."""

    @classmethod
    def check(cls) -> BackendStatus:
        """The module check, plus the accelerators torch sees (imports torch: ``corral env`` only)."""
        status = super().check()
        if not status.available:
            return status
        return attrs.evolve(status, acceleration=torch_acceleration())


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
        from corral.pull import open_url_range

        return open_url_range(url, start=start, headers=headers)

    def finish(self, transfer: Transfer) -> Path:
        """Called once the verified file is at ``transfer.target``; returns the path it shows under.

        A hub cache links its snapshot entry here. The default returns ``link`` or ``target``.
        """
        return transfer.link or transfer.target

    def download(
        self,
        repo: str,
        files: Sequence[RemoteFile],
        *,
        revision: str | None,
        dest: Path | None,
        progress: Progress | None = None,
    ) -> list[Path]:
        """Fetch ``files`` (verified, then moved into place) and return their local paths."""
        from corral.pull import download

        return download(self, repo, files, revision=revision, dest=dest, progress=progress)


class Exporter:
    """Writes new model files (a fresh model from a config, a conversion, ...)."""

    name: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @classmethod
    def check(cls) -> BackendStatus:
        return backend_status(cls.name, cls.distribution, cls.requires)

    def export(self, out: Path, options: Mapping[str, Any], progress: Progress | None = None) -> Path:
        raise NotImplementedError


class GpuVendor:
    """Reads GPU facts for one vendor."""

    name: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()

    def probe(self) -> list[GpuInfo]:
        """The GPUs of this vendor on this machine (empty when there are none)."""
        raise NotImplementedError

    def process_memory(self, pids: Sequence[int]) -> Mapping[int, int] | None:
        """GPU memory in bytes that each of ``pids`` holds, over all of this vendor's GPUs, for the
        processes the driver reports (a process it does not list is left out). None: this vendor cannot
        tell memory per process. The runner executor measures a loaded model's VRAM with it."""
        return None

