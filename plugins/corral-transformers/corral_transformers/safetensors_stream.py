"""Write torch tensors as one ``.safetensors`` file, tensor by tensor, reporting progress.

``safetensors.torch.save_file`` writes a whole dict of tensors in one call: no progress for a file of
several gigabytes, and every tensor must already have the target dtype, so bf16 output would need a full
bf16 copy of the model next to the fp32 one (older safetensors versions also made a ``bytes`` copy of
every tensor). The format is simple (an 8-byte little-endian header length, a JSON header of dtype /
shape / byte offsets, the raw data), so this writes it directly, converting one tensor at a time.
``safetensors`` and transformers read the result (the tests load it with both).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

if TYPE_CHECKING:
    import torch

#: torch dtype name -> safetensors dtype code.
DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
#: Bytes written per write call, so progress moves within a big tensor too.
CHUNK = 64 * 1024 * 1024


def save(tensors: Iterable[tuple[str, torch.Tensor]], path: Path, *, dtype: str,
         metadata: Mapping[str, str] | None = None,
         progress: Callable[[int, int], None] | None = None) -> int:
    """Write ``(name, tensor)`` pairs converted to ``dtype``; return the bytes of tensor data written."""
    import torch

    target = getattr(torch, dtype)
    items = list(tensors)
    itemsize = torch.empty((), dtype=target).element_size()
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, tensor in items:
        size = tensor.numel() * itemsize
        header[name] = {"dtype": DTYPES[dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    done = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for _name, tensor in items:
            data = tensor.detach().to(device="cpu", dtype=target).contiguous().reshape(-1).view(torch.uint8).numpy()
            for start in range(0, len(data), CHUNK):
                out.write(memoryview(data[start:start + CHUNK]))
                done += min(CHUNK, len(data) - start)
                if progress:
                    progress(done, offset)
            del data
    return offset
