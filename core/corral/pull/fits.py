"""Would a repository's GGUF variants fit in memory? Answered before anything is downloaded.

The header of one variant (its first bytes, fetched with a range request into a sparse file of the
file's full size) gives the model's shape; each variant is then estimated by llama.cpp's memory model
(:mod:`corral.estimate.llamacpp`) as its download size plus the KV cache, compute buffers and runtime
at a working context of at most :data:`corral.catalog.estimate.DEFAULT_CTX` tokens. Without a readable
header the estimate is the weights alone, marked rough.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

from corral.catalog.estimate import DEFAULT_CTX
from corral.errors import CorralError
from corral.estimate import llamacpp as lc
from corral.pull.variants import Variant
from corral.records import Snapshot

#: Bytes of a remote GGUF read for its header (metadata, vocabulary and tensor list).
HEADER_BYTES = 16 * 1024 * 1024


def remote_shape(source: Any, snapshot: Snapshot, name: str) -> lc.LlamaShape | None:
    """The llama.cpp shape of the remote GGUF ``name``, from its first bytes; None when unreadable."""
    from corral.detect.gguf import read_gguf_header
    from corral.estimate.gguf import shape_from_header

    remote = next((f for f in snapshot.files if f.name == name), None)
    if remote is None or not remote.size:
        return None
    with tempfile.TemporaryDirectory(prefix="corral-header-") as tmp:
        (transfer,) = source.transfers(snapshot, [remote], dest=Path(tmp))
        if transfer.url is None:
            return None
        path = Path(tmp) / "header.gguf"
        want = min(remote.size, HEADER_BYTES)
        try:
            with open(path, "wb") as out, source.open_range(transfer.url, headers=transfer.headers) as (_, chunks):
                got = 0
                for chunk in chunks:
                    out.write(chunk[: want - got])
                    got += len(chunk)
                    if got >= want:
                        break
                out.truncate(remote.size)  # sparse: the parser checks the tensor data would fit
            return shape_from_header(read_gguf_header(path))
        except (CorralError, OSError, ValueError):
            return None


def estimate_variants(source: Any, snapshot: Snapshot, variants: Sequence[Variant],
                      free: tuple[int, int | None]) -> list[dict]:
    """For each model variant: ``{"quant", "estimate_bytes", "fits", "rough", "n_ctx"}`` against ``free``
    (free RAM, free VRAM or None) as :func:`corral.estimate.free_memory` gives them."""
    models = [v for v in variants if not v.mmproj and v.size]
    if not models:
        return []
    shape = remote_shape(source, snapshot, models[0].files[0])
    ram, vram = free
    room = ram + (vram or 0)
    out = []
    for v in models:
        total, n_ctx = int(v.size or 0), None
        if shape is not None and shape.n_layer:
            n_ctx = min(shape.n_ctx_train or DEFAULT_CTX, DEFAULT_CTX)
            run = lc.LlamaRun.from_settings(shape, {"n_ctx": n_ctx})
            total += lc.kv_bytes(shape, run) + lc.compute_bytes(shape, run, device="cpu") + lc.runtime_bytes(shape)
        out.append({"quant": v.quant, "files": list(v.files), "estimate_bytes": total, "fits": total <= room,
                    "rough": shape is None, "n_ctx": n_ctx, "free_bytes": room})
    return out
