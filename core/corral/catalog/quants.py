"""Bits per weight of llama.cpp's quantizations, used to estimate files the catalog has not measured.

Mixed k-quants keep a few tensors at higher precision, so their average is above their block format's
(Q4_K_M averages about 4.89 bits on Llama-class models, while a Q4_K block is 4.5). Two of llama.cpp's
own rules matter for small models with large vocabularies, and :func:`gguf_weight_bytes` applies them:

* the output matrix (the token embeddings, when tied) is stored as Q6_K, or as Q8_0 when the hidden
  size is not a multiple of 256;
* k-quant blocks span 256 values, so matrices whose rows are not a multiple of 256 fall back to the
  legacy 32-value formats (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> IQ4_NL).
"""

from __future__ import annotations

#: Average bits per weight of each GGUF file type (llama.cpp's ``quantize`` figures).
GGUF_BITS = {
    "Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.91, "Q3_K_L": 4.27, "IQ4_XS": 4.25, "IQ4_NL": 4.5, "Q4_0": 4.55,
    "Q4_K_S": 4.58, "Q4_K_M": 4.89, "Q5_0": 5.5, "Q5_K_S": 5.54, "Q5_K_M": 5.70, "Q6_K": 6.56, "Q8_0": 8.5,
    "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}  # fmt: skip
#: What a k-quant falls back to for rows that are not a multiple of 256 values.
K_FALLBACK_BITS = {
    "Q2_K": 4.5, "Q3_K_S": 4.5, "Q3_K_M": 4.5, "Q3_K_L": 4.5, "Q4_K_S": 5.5, "Q4_K_M": 5.5,
    "Q5_K_S": 6.0, "Q5_K_M": 6.0, "Q6_K": 8.5, "IQ4_XS": 4.5,
}  # fmt: skip
#: Bits per value of plain dtypes (safetensors and friends).
DTYPE_BITS = {"fp32": 32.0, "float32": 32.0, "fp16": 16.0, "float16": 16.0, "bf16": 16.0, "bfloat16": 16.0,
              "fp8": 8.0, "int8": 8.0, "int4": 4.0}  # fmt: skip


def known_bits(name: str) -> float | None:
    """Bits per weight of a quantization or dtype by name (case-insensitive), or None."""
    upper = name.upper()
    return GGUF_BITS.get(upper) or DTYPE_BITS.get(name.lower())


def gguf_weight_bytes(
    parameters: int, bits: float, quant: str, *, hidden: int | None, vocab: int | None, tied: bool = True
) -> int:
    """Estimated bytes of a GGUF file's tensors: body × its bits, the output matrix at its own precision."""
    wide = not hidden or hidden % 256 == 0
    body_bits = bits if wide else max(bits, K_FALLBACK_BITS.get(quant.upper(), bits))
    output = (vocab or 0) * (hidden or 0)
    embeddings = output if tied else 2 * output
    output_bits = max(bits, 6.5625 if wide else 8.5)
    body = max(parameters - embeddings, 0)
    if tied:
        return int(body * body_bits / 8 + output * output_bits / 8)
    # untied: the input embeddings follow the file type, the output matrix gets the higher precision
    return int(body * body_bits / 8 + output * body_bits / 8 + output * output_bits / 8)
