"""Say what a set of weights is from its tensor names (and shapes, where they matter).

One classifier serves every format that names its tensors: safetensors headers give names, shapes and
dtypes; pickle checkpoints give only the names (their shapes are left unknown, ``None``). The families are
recognised by the names their reference implementations save, so renamed or pruned checkpoints fall
through to "unknown" rather than to a wrong guess.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from attrs import frozen

from corral.records import Category, ComponentKind, Facts, Kind

#: safetensors dtype codes -> the names torch and the rest of Corral use.
DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu", "F4": "float4",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}
#: Bytes per element of each safetensors dtype (F4 packs two values per byte; see itemsize_bits).
DTYPE_BITS = {
    "F64": 64, "F32": 32, "F16": 16, "BF16": 16, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F4": 4,
    "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U64": 64, "U32": 32, "U16": 16, "U8": 8, "BOOL": 8,
}

#: Image families shared by checkpoints, LoRAs and diffusers pipelines, so LoRAs find their bases.
SD, SDXL, SD3, FLUX, WAN = "stable-diffusion", "sdxl", "sd3", "flux", "wan"
IMAGE_TAGS = ("text-to-image", "image-to-image")
VIDEO_TAGS = ("text-to-video", "video")


@frozen
class Verdict:
    """What a tensor set is; :func:`classify` fills it, the format detectors wrap it in a Detection."""

    kind: Kind
    category: Category | None
    component: ComponentKind | None
    confidence: float
    reasons: tuple[str, ...]
    facts: Facts


def _layer_count(names: Iterable[str], pattern: str) -> int | None:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for n in names if (m := rx.match(n))}
    return len(found) or None


def _numel(shape: tuple[int, ...]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _find(shapes: Mapping[str, tuple[int, ...] | None], suffix: str) -> tuple[int, ...] | None:
    """The shape of the first tensor whose name ends with ``suffix`` (None when unknown)."""
    for name, shape in shapes.items():
        if name.endswith(suffix) and shape:
            return shape
    return None


#: SDXL's UNet stacks several transformer blocks per attention (2 and 10); SD 1.x and 2.x have one each.
_DEEP_ATTENTION = re.compile(r"(transformer_blocks[._][1-9]|text_encoder_2\.|lora_te2_)")


def _lora_family(names: list[str]) -> str | None:
    """The image family a LoRA patches, from kohya or diffusers key names (None: an LLM or unknown)."""
    joined = "\n".join(names[:4000])
    if "double_blocks" in joined or "single_blocks" in joined or "single_transformer_blocks" in joined:
        return FLUX
    if "lora_te1_" in joined or "lora_unet_input_blocks" in joined or _DEEP_ATTENTION.search(joined):
        return SDXL
    if "lora_unet_" in joined or "lora_te_" in joined or re.search(r"^unet\.", joined, re.M):
        return SD
    return None


def _denoiser(names: set[str], strip: str = "") -> tuple[str, tuple[str, ...], str] | None:
    """(family, tags, reason) for a diffusion denoiser's names (with ``strip`` removed), else None."""
    n = {x[len(strip):] for x in names if x.startswith(strip)} if strip else names
    has = lambda pre: any(x.startswith(pre) for x in n)  # noqa: E731
    if has("double_blocks.") and has("single_blocks."):
        return FLUX, IMAGE_TAGS, "tensor names double_blocks.* + single_blocks.* (a FLUX transformer)"
    if has("transformer_blocks.") and has("single_transformer_blocks."):
        return FLUX, IMAGE_TAGS, "tensor names transformer_blocks.* + single_transformer_blocks.* (FLUX, diffusers)"
    if has("patch_embedding.") and any(re.match(r"blocks\.\d+\.self_attn\.", x) for x in n):
        return WAN, VIDEO_TAGS, "tensor names blocks.N.self_attn.* + patch_embedding (a Wan video transformer)"
    if has("patch_embedding.") and has("condition_embedder.") and any(re.match(r"blocks\.\d+\.attn1\.", x) for x in n):
        return WAN, VIDEO_TAGS, ("tensor names blocks.N.attn1.* + patch_embedding + condition_embedder "
                                 "(a Wan video transformer, diffusers)")
    if has("joint_blocks."):
        return SD3, IMAGE_TAGS, "tensor names joint_blocks.* (a Stable Diffusion 3 MMDiT)"
    return None


def classify(
    shapes: Mapping[str, tuple[int, ...] | None],
    dtypes: Mapping[str, str] | None = None,
    *,
    where: str = "tensor names",
) -> Verdict:
    """Classify a tensor set by its names.

    :param shapes: tensor name -> shape, or ``None`` per tensor where the format does not say (pickles).
    :param dtypes: tensor name -> dtype name ("float16", ...), for the most common dtype.
    :param where: how the reasons call the names (``"tensor names"``, ``"checkpoint keys"``).
    :returns: a verdict; unknown families come back as a MODEL with no category and low confidence.
    """
    names = sorted(shapes)
    nameset = set(names)
    has = lambda pre: any(x.startswith(pre) for x in names)  # noqa: E731
    contains = lambda part: any(part in x for x in names)  # noqa: E731
    known = [s for s in shapes.values() if s is not None]
    params = sum(_numel(s) for s in known) if known and len(known) == len(shapes) else None
    dtype = None
    if dtypes:
        weight = Counter()
        for name, dt in dtypes.items():
            weight[dt] += _numel(shapes.get(name) or (1,))
        dtype = weight.most_common(1)[0][0]
    extra: dict = {"tensor_count": len(names)}
    quant = "fp8" if dtype and dtype.startswith("float8") else None

    def verdict(kind, category, component=None, confidence=0.9, reasons=(), **facts) -> Verdict:
        tags = facts.pop("tags", None)
        more = dict(extra)
        if tags:
            more["tags"] = list(tags)
        return Verdict(kind, category, component, confidence, tuple(reasons), Facts(
            parameters=params, dtype=dtype, quantization=quant, extra=more, **facts))

    # LoRA first: adapter names embed the names of the layers they patch (down_blocks, self_attn, ...).
    lora_a = [n for n in names if re.search(r"(lora_A|lora_down|lora\.down|lora_a)(\.[^.]+)?\.weight$", n)]
    if lora_a or contains(".lora_B.") or contains(".lora_up."):
        ranks = Counter(min(s) for n in lora_a if (s := shapes.get(n)) and len(s) >= 2)
        rank = ranks.most_common(1)[0][0] if ranks else None
        style = "lora_down/lora_up" if contains("lora_down") or contains("lora.down") else "lora_A/lora_B"
        if any(n.endswith(".alpha") for n in names):
            style += " + .alpha"
        family = _lora_family(names)
        reasons = [f"{where} *.{style} (a LoRA adapter)"]
        if rank:
            reasons.append(f"rank {rank} from the adapter's down-projection shapes")
        return verdict(Kind.LORA, None, confidence=0.95, reasons=reasons, lora_rank=rank, architecture=family)

    # A single-file SD checkpoint bundles its VAE and text encoders under their own prefixes.
    if has("model.diffusion_model."):
        found = _denoiser(nameset, "model.diffusion_model.")
        if found:
            family, tags, why = found
            return verdict(Kind.MODEL, Category.IMAGE, confidence=0.9, architecture=family, tags=tags,
                           reasons=[f"{why}, under model.diffusion_model.* (a single-file checkpoint)"])
        # SDXL conditions on image size through label_emb (an ADM-style embedding SD 1.x/2.x lacks).
        family = SDXL if has("conditioner.embedders.1.") or has("model.diffusion_model.label_emb.") else SD
        parts = [p for p, pre in (("VAE", "first_stage_model."), ("text encoder", "cond_stage_model."),
                                  ("text encoders", "conditioner.embedders.")) if has(pre)]
        why = f"{where} model.diffusion_model.* (a single-file Stable Diffusion checkpoint)"
        if parts:
            why += f" with its {' and '.join(parts)} inside"
        if family == SDXL:
            why += "; SDXL: " + ("two text encoders" if has("conditioner.embedders.1.") else
                                 "label_emb.* (size conditioning)")
        return verdict(Kind.MODEL, Category.IMAGE, confidence=0.95, architecture=family, tags=IMAGE_TAGS,
                       reasons=[why])

    found = _denoiser(nameset)
    if found:
        family, tags, why = found
        return verdict(Kind.MODEL, Category.IMAGE, confidence=0.85, architecture=family, tags=tags, reasons=[why])

    if has("down_blocks.") and contains(".resnets.") and has("conv_in.") and has("time_embedding."):
        sdxl = has("add_embedding.")
        why = f"{where} down_blocks.*.resnets + conv_in + time_embedding (a diffusers UNet)"
        why += "; add_embedding.* (size conditioning): SDXL" if sdxl else "; no add_embedding: SD 1.x/2.x"
        return verdict(Kind.MODEL, Category.IMAGE, confidence=0.8, architecture=SDXL if sdxl else SD,
                       tags=IMAGE_TAGS, reasons=[why])

    if has("input_blocks.") and has("output_blocks.") and has("time_embed."):
        sdxl = has("label_emb.")
        why = f"{where} input_blocks + output_blocks + time_embed (a UNet in the original LDM layout)"
        why += "; label_emb.* (size conditioning): SDXL" if sdxl else "; no label_emb: SD 1.x/2.x"
        return verdict(Kind.MODEL, Category.IMAGE, confidence=0.8, architecture=SDXL if sdxl else SD,
                       tags=IMAGE_TAGS, reasons=[why])

    diffusers_vae = has("encoder.down_blocks.") and has("decoder.up_blocks.")
    ldm_vae = any(re.match(r"encoder\.down\.\d+\.block\.", n) for n in names) and (
        has("quant_conv.") or any(re.match(r"decoder\.up\.\d+\.block\.", n) for n in names))
    if diffusers_vae or ldm_vae:
        layout = "encoder.down_blocks + decoder.up_blocks" if diffusers_vae else "encoder.down.N.block + decoder"
        return verdict(Kind.COMPONENT, None, ComponentKind.VAE, 0.9,
                       [f"{where} {layout} (an autoencoder: a VAE)"])

    clip = [n for n in names if "text_model.encoder.layers." in n]
    open_clip = has("transformer.resblocks.") and contains("token_embedding")
    if clip or open_clip:
        width = None
        for suffix in ("token_embedding.weight", "final_layer_norm.weight", "ln_final.weight"):
            if (shape := _find(shapes, suffix)) is not None:
                width = shape[-1]
                break
        style = "text_model.encoder.layers.*" if clip else "transformer.resblocks.* (OpenCLIP)"
        layers = _layer_count(names, r".*text_model\.encoder\.layers\.(\d+)\.") if clip else None
        reasons = [f"{where} {style} (a CLIP text encoder)"]
        if width == 1280:
            kind, conf = ComponentKind.CLIP_G, 0.9
            reasons.append("width 1280: CLIP-G (OpenCLIP ViT-bigG)")
        elif width == 768:
            kind, conf = ComponentKind.CLIP_L, 0.9
            reasons.append("width 768: CLIP-L (ViT-L/14)")
        else:
            kind, conf = ComponentKind.CLIP_L, 0.5
            reasons.append(f"width {width if width else 'unknown'} is neither CLIP-L (768) nor CLIP-G (1280); "
                           "taken as clip-l")
        return verdict(Kind.COMPONENT, None, kind, conf, reasons, hidden_size=width, layers=layers)

    if any(re.match(r"encoder\.block\.\d+\.layer\.", n) for n in names) and (
            "shared.weight" in nameset or has("encoder.embed_tokens.")):
        width = (_find(shapes, "shared.weight") or (None, None))[-1]
        reasons = [f"{where} encoder.block.N.layer.* + shared.weight (a T5 encoder)"]
        conf = 0.9
        if has("decoder.block."):
            reasons.append("it carries a decoder too; only its encoder is used as t5xxl")
            conf = 0.6
        return verdict(Kind.COMPONENT, None, ComponentKind.T5XXL, conf, reasons, hidden_size=width,
                       layers=_layer_count(names, r"encoder\.block\.(\d+)\."))

    word = [n for n in names if n.endswith("embeddings.word_embeddings.weight")]
    if word and contains("encoder.layer."):
        shape = shapes.get(word[0])
        hidden = shape[-1] if shape else None
        vocab = shape[0] if shape else None
        layers = _layer_count(names, r".*encoder\.layer\.(\d+)\.")
        if has("classifier.") or contains(".classifier."):
            return verdict(Kind.MODEL, Category.RERANK, None, 0.8,
                           [f"{where} embeddings.word_embeddings + encoder.layer.* + classifier.* "
                            "(a BERT-like cross-encoder: reranker)"],
                           hidden_size=hidden, vocab_size=vocab, layers=layers)
        return verdict(Kind.MODEL, Category.EMBEDDING, None, 0.8,
                       [f"{where} embeddings.word_embeddings + encoder.layer.* (a BERT-like encoder: embeddings)"],
                       hidden_size=hidden, vocab_size=vocab, layers=layers, embedding_dims=hidden)

    decoder = any(re.match(r"(model\.)?layers\.\d+\.self_attn\.", n) for n in names)
    if decoder or "lm_head.weight" in nameset or has("model.embed_tokens."):
        embed = _find(shapes, "embed_tokens.weight")
        reasons = [f"{where} model.layers.N.self_attn.* (a decoder LLM)" if decoder
                   else f"{where} lm_head / embed_tokens (a decoder LLM)"]
        return verdict(Kind.MODEL, Category.TEXT_GENERATION, None, 0.85 if decoder else 0.6, reasons,
                       layers=_layer_count(names, r"(?:model\.)?layers\.(\d+)\."),
                       hidden_size=embed[-1] if embed else None, vocab_size=embed[0] if embed else None)

    shown = [n for n in names if "." in n] or names  # pickles also hold strings that are not tensor names
    sample = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
    return verdict(Kind.MODEL, None, None, 0.2,
                   [f"{where} ({sample or 'none'}) match no family Corral knows; pass --category"])
