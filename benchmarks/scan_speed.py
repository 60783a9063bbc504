"""How fast does ``corral scan`` detect a tree of models, against the raw gguf library?

Builds a 1000-file tree in a temporary folder (tiny GGUF models mostly, some non-model files, and some
safetensors when the weight factories are importable), then times :func:`corral.detect.detect_path` over
:func:`corral.detect.iter_candidates`, and the GGUF files alone through ``gguf.GGUFReader``.

    python benchmarks/scan_speed.py [--files 1000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from factories import write_tiny_gguf  # noqa: E402

from corral.detect import detect_path, iter_candidates  # noqa: E402
from corral.errors import DetectionError  # noqa: E402


def build_tree(root: Path, files: int) -> dict[str, int]:
    """Tiny GGUFs (80 %), safetensors (10 % when available, else more GGUFs), non-model files (10 %)."""
    try:
        from factories_weights import write_llm_safetensors
    except ImportError:
        write_llm_safetensors = None
    n_other = files // 10
    n_st = files // 10 if write_llm_safetensors else 0
    n_gguf = files - n_other - n_st
    gguf_proto = write_tiny_gguf(root / "proto.gguf.tmp")
    st_proto = write_llm_safetensors(root / "proto.safetensors.tmp") if n_st else None
    for i in range(25):
        (root / f"dir{i:02d}").mkdir()
    for i in range(n_gguf):
        shutil.copyfile(gguf_proto, root / f"dir{i % 25:02d}" / f"model-{i:04d}.gguf")
    for i in range(n_st):
        (root / f"st{i % 5}").mkdir(exist_ok=True)
        shutil.copyfile(st_proto, root / f"st{i % 5}" / f"weights-{i:04d}.safetensors")
    for i in range(n_other):
        (root / f"dir{i % 25:02d}" / f"notes-{i:04d}.txt").write_text("not a model\n")
    gguf_proto.unlink()
    if st_proto:
        st_proto.unlink()
    return {"gguf": n_gguf, "safetensors": n_st, "other": n_other}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    args = parser.parse_args()
    import gguf

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        counts = build_tree(root, args.files)
        for p in root.rglob("*"):  # warm the page cache so both sides read from memory
            if p.is_file():
                p.read_bytes()

        start = time.perf_counter()
        detected = errors = 0
        ggufs = []
        for path in iter_candidates(root):
            try:
                detect_path(path)
                detected += 1
            except DetectionError:
                errors += 1
            if path.suffix == ".gguf":
                ggufs.append(path)
        scan_s = time.perf_counter() - start

        start = time.perf_counter()
        for path in ggufs:
            detect_path(path)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        for path in ggufs:
            gguf.GGUFReader(path)
        raw_s = time.perf_counter() - start

    total = sum(counts.values())
    print(f"tree: {counts['gguf']} GGUF, {counts['safetensors']} safetensors, {counts['other']} other files")
    print(
        f"scan: {total} files in {scan_s:.2f} s = {total / scan_s:.0f} files/s "
        f"({detected + errors} candidates: {detected} detected, {errors} errors)"
    )
    print(
        f"GGUF detect_path: {len(ggufs)} files in {ours_s:.2f} s; gguf.GGUFReader: {raw_s:.2f} s; "
        f"GGUF header parse vs gguf.GGUFReader: {raw_s / ours_s:.1f}x"
    )


if __name__ == "__main__":
    main()
