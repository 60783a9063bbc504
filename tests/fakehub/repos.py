"""The fake hub's repositories: real small model files on disk, listed with sizes, sha256 and git ids.

* ``corral-test/tiny-chat-GGUF``: a llama GGUF in two quantizations (a real Q8_0 file, and F16 split in
  two parts) plus a CLIP projector that fits it; branch ``dev`` adds ``NOTES.md``.
* ``corral-test/tiny-embed``: a sentence-transformers embedding folder (safetensors).
* ``corral-test/tiny-lora-GGUF``: a GGUF LoRA adapter that fits the tiny chat model.
* ``corral-test/private-embed``: the embedding folder, readable only with :data:`TOKEN`.
* ``corral-test/hostile``: a model whose listing also names ``../x`` and ``/etc/x``.
* ``corral-test/huge``: lists a 10 TB GGUF (the disk check must refuse it before any byte moves).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TOKEN = "corral-test-token"
#: Width of the tiny chat model; its projector and LoRA are built to fit it.
N_EMBD = 256
CHAT = "corral-test/tiny-chat-GGUF"
EMBED = "corral-test/tiny-embed"
LORA = "corral-test/tiny-lora-GGUF"
PRIVATE = "corral-test/private-embed"
HOSTILE = "corral-test/hostile"
HUGE = "corral-test/huge"
Q8 = "tiny-chat-Q8_0.gguf"
F16_PARTS = ("tiny-chat-F16-00001-of-00002.gguf", "tiny-chat-F16-00002-of-00002.gguf")
MMPROJ = "mmproj-tiny-chat-f16.gguf"


@dataclass
class Entry:
    """One file of a commit. ``listed_size`` / ``listed_sha256`` override what the API says about it."""

    path: str
    blob: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool
    listed_size: int | None = None

    @property
    def api_size(self) -> int:
        return self.listed_size if self.listed_size is not None else self.size


@dataclass
class Repo:
    id: str
    refs: dict[str, str]
    commits: dict[str, dict[str, Entry]]
    private: bool = False
    downloads: int = 0
    likes: int = 0
    pipeline_tag: str | None = None
    ms_task: str | None = None
    tags: list[str] = field(default_factory=list)

    def commit_of(self, revision: str | None) -> str | None:
        revision = revision or "main"
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None

    def used_storage(self) -> int:
        return sum(e.api_size for files in self.commits.values() for e in files.values())


def _entry(path: str, source: Path, store: Path) -> Entry:
    data = source.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    blob = store / sha
    if not blob.exists():
        shutil.copyfile(source, blob)
    lfs = path.endswith((".gguf", ".safetensors", ".bin")) or len(data) > 10_000_000
    return Entry(path=path, blob=blob, size=len(data), sha256=sha, git_oid=oid, lfs=lfs)


def _commit_id(repo: str, files: dict[str, Entry]) -> str:
    text = repo + "".join(f"{p}:{e.sha256}" for p, e in sorted(files.items()))
    return hashlib.sha1(text.encode()).hexdigest()


def _make_repo(repo: str, folder: Path, store: Path, *, names: dict[str, str] | None = None, **info) -> Repo:
    """A repo of every file under ``folder`` (``names`` renames some, hostile names included)."""
    files: dict[str, Entry] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        listed = (names or {}).get(rel, rel)
        files[listed] = _entry(listed, path, store)
    commit = _commit_id(repo, files)
    return Repo(id=repo, refs={"main": commit, "master": commit}, commits={commit: files}, **info)


def _add_branch(repo: Repo, branch: str, extra: dict[str, Path], store: Path) -> None:
    files = dict(repo.commits[repo.refs["main"]])
    for name, source in extra.items():
        files[name] = _entry(name, source, store)
    commit = _commit_id(repo.id + branch, files)
    repo.commits[commit] = files
    repo.refs[branch] = commit


def write_q8_gguf(path: Path, **kwargs) -> Path:
    """The tiny llama GGUF with every matrix quantized to Q8_0 (``general.file_type`` 7), as llama.cpp's
    quantize writes it; norms stay F32."""
    import gguf
    import numpy as np

    from factories import _copy_field, write_tiny_gguf

    whole = write_tiny_gguf(path.with_name(path.name + ".f32"), file_type=0, **kwargs)
    reader = gguf.GGUFReader(whole)
    arch = str(bytes(reader.fields["general.architecture"].parts[-1]), "utf-8")
    w = gguf.GGUFWriter(path, arch)
    for f in reader.fields.values():
        if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.file_type"):
            continue
        _copy_field(w, f)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for t in reader.tensors:
        data = np.array(t.data, dtype=np.float32)
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(t.name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    del reader
    whole.unlink()
    return path


def file_repo(repo_id: str, files: dict[str, Path], store: Path) -> Repo:
    """A repository of the given files (name in the repo -> file on disk), e.g. a real model to benchmark."""
    store.mkdir(parents=True, exist_ok=True)
    entries = {name: _entry(name, Path(source), store) for name, source in files.items()}
    commit = _commit_id(repo_id, entries)
    return Repo(id=repo_id, refs={"main": commit, "master": commit}, commits={commit: entries}, tags=["gguf"])


def build_repos(root: Path) -> dict[str, Repo]:
    """Write every test repository's files under ``root`` and return the repos by id."""
    from factories import write_lora_gguf, write_mmproj_gguf, write_split_gguf
    from factories_weights import write_embedding_dir

    root = Path(root)
    store = root / "blobs"
    store.mkdir(parents=True, exist_ok=True)
    size = {"n_embd": N_EMBD, "n_ff": 4 * N_EMBD}
    repos: dict[str, Repo] = {}

    chat = root / "chat"
    write_q8_gguf(chat / Q8, **size)
    write_split_gguf(chat, "tiny-chat-F16", parts=2, file_type=1, seed=3, **size)
    write_mmproj_gguf(chat / MMPROJ, projection_dim=N_EMBD)
    (chat / "README.md").write_text("# tiny chat\nA tiny llama for Corral's tests.\n")
    repos[CHAT] = _make_repo(CHAT, chat, store, downloads=1200, likes=12, pipeline_tag="image-text-to-text",
                             ms_task="multimodal-dialogue", tags=["gguf", "llama"])  # fmt: skip
    notes = root / "notes.md"
    notes.write_text("dev branch notes\n")
    _add_branch(repos[CHAT], "dev", {"NOTES.md": notes}, store)

    embed = write_embedding_dir(root / "embed")
    repos[EMBED] = _make_repo(EMBED, embed, store, downloads=900, likes=30, pipeline_tag="sentence-similarity",
                              ms_task="sentence-embedding", tags=["sentence-transformers"])  # fmt: skip
    repos[PRIVATE] = _make_repo(PRIVATE, embed, store, private=True, downloads=5, pipeline_tag="sentence-similarity",
                                ms_task="sentence-embedding")  # fmt: skip

    lora = root / "lora"
    write_lora_gguf(lora / "tiny-chat-lora.gguf", n_embd=N_EMBD)
    repos[LORA] = _make_repo(LORA, lora, store, downloads=40, likes=2, pipeline_tag="text-generation",
                             ms_task="text-generation", tags=["gguf", "lora"])  # fmt: skip

    hostile = root / "hostile"
    hostile.mkdir()
    shutil.copyfile(chat / Q8, hostile / "model-Q8_0.gguf")
    (hostile / "escape.txt").write_text("written outside the destination\n")
    (hostile / "etc.txt").write_text("written to /etc\n")
    repos[HOSTILE] = _make_repo(HOSTILE, hostile, store, names={"escape.txt": "../x", "etc.txt": "/etc/x"},
                                downloads=1, pipeline_tag="text-generation", ms_task="text-generation")  # fmt: skip

    huge = root / "huge"
    huge.mkdir()
    (huge / "huge-Q4_K_M.gguf").write_bytes(b"GGUF" + bytes(60))
    repos[HUGE] = _make_repo(HUGE, huge, store, pipeline_tag="text-generation", ms_task="text-generation")
    for entry in repos[HUGE].commits[repos[HUGE].refs["main"]].values():
        entry.listed_size = 10 * 1000**4
    return repos
