"""Model folders: Hugging Face / sentence-transformers (config.json), diffusers (model_index.json), PEFT
adapters (adapter_config.json), Kokoro layouts, and folders holding one loose model file.

The JSON files say what the model is; the weights' headers (safetensors) or opcode scans (pickles) give
the parameter count and prove the weights are there and safe.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from corral.detect.bounded import MAX_CONFIG, BoundedReader, read_json
from corral.detect.safetensors import read_header
from corral.detect.tensors import FLUX, IMAGE_TAGS, SD, SD3, SDXL, VIDEO_TAGS, WAN
from corral.errors import DetectionError
from corral.records import Category, Detection, Facts, Format, Kind

#: config.json and friends are a few KB; tokenizer_config.json with a long chat template a few hundred.
MAX_TOKENIZER_CONFIG = 16 * 1024 * 1024
MAX_WEIGHT_FILES = 4096
_LOOSE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx")
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
_ENCODER_ARCHS = re.compile(
    r"^(Bert|XLMRoberta|Roberta|MPNet|DistilBert|NomicBert|ModernBert|DebertaV2|Deberta|Electra|Camembert|"
    r"Albert|NewModel|JinaBert|Gte|T5Encoder|MT5Encoder)Model$")
_VLM_ARCHS = re.compile(r"Llava|Qwen2VL|Qwen2_5_VL|Qwen2_5VL|Qwen3VL|Idefics|PaliGemma|Mllama|Blip2|InstructBlip|"
                        r"Pixtral|SmolVLM|InternVL|Phi3V|Phi4MM|MiniCPMV|Florence|Kosmos|Fuyu|VisionEncoderDecoder")


def _read_object(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DetectionError(f"{path}: expected a JSON object")
    return data


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _first(config: dict, *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _inside(root: Path, rel: str) -> Path:
    """``root/rel``, refusing names that climb out of ``root`` (index files are untrusted too).

    The check is on the name, not the link target: a Hugging Face cache snapshot links every shard
    into ``../../blobs/``, and that is the folder's own layout, not a name climbing out of it.
    """
    target = Path(os.path.normpath(root / rel))
    if Path(os.path.normpath(root)) not in target.parents:
        raise DetectionError(f"{root}: weight file name {rel!r} points outside the model folder")
    return target


# --- weights ---------------------------------------------------------------------------------------


def _weights(folder: Path, stems: Iterable[str] = ()) -> tuple[list[Path], str]:
    """The weight files transformers would load from ``folder``: safetensors first, else pickles."""
    for index_name in ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json"):
        index = folder / index_name
        if index.is_file():
            data = _read_object(index)
            wmap = data.get("weight_map")
            if not isinstance(wmap, dict) or not wmap:
                raise DetectionError(f"{index}: no weight_map; re-download the file")
            names = sorted({v for v in wmap.values() if isinstance(v, str)})[:MAX_WEIGHT_FILES]
            files = [_inside(folder, n) for n in names]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise DetectionError(f"{folder}: shard {missing[0]} listed in {index_name} is missing; "
                                     "finish the download")
            return files, "safetensors"
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if stems:
        found = [p for p in found if any(p.name.startswith(s) for s in stems)] or found
    plain = [p for p in found if not re.search(r"\.(fp16|bf16|fp32)\.safetensors$", p.name)]
    if found:
        return (plain or found)[:MAX_WEIGHT_FILES], "safetensors"
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _PICKLE_SUFFIXES
                     and not p.name.startswith(("training_args", "optimizer", "scheduler", "rng_state")))
    return pickles[:MAX_WEIGHT_FILES], "pickle"


def _weights_facts(files: list[Path], kind: str, allow_unsafe: bool) -> tuple[int | None, str | None,
                                                                              set[str], str | None]:
    """(parameters, most common dtype, tensor names, unsafe reason) of a folder's weight files."""
    from corral.detect.pickle_scan import require_safe, scan_pickle
    from corral.detect.tensors import DTYPE_NAMES

    params, names, dtypes, unsafe = 0, set(), {}, None
    for f in files:
        if kind == "safetensors":
            header = read_header(f)
            params += header.parameters
            names.update(header.tensors)
            for t in header.tensors.values():
                dt = DTYPE_NAMES[t.dtype]
                dtypes[dt] = dtypes.get(dt, 0) + 1
        else:
            scan = scan_pickle(f)
            require_safe(scan, allow_unsafe)
            unsafe = unsafe or scan.unsafe
            names.update(scan.keys)
            for dt, n in scan.dtypes.items():
                dtypes[dt] = dtypes.get(dt, 0) + n
    dtype = max(dtypes, key=dtypes.get) if dtypes else None
    return (params if kind == "safetensors" else None), dtype, names, unsafe


def _size(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def _small_files(folder: Path, exclude: set[Path]) -> list[Path]:
    """Top-level config and tokenizer files that travel with the weights."""
    keep = (".json", ".txt", ".model", ".jinja", ".tiktoken", ".py", ".vocab", ".spm", ".merges")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in keep and p not in exclude)


# --- transformers / sentence-transformers ------------------------------------------------------------


def category_from_config(config: dict, folder: Path) -> tuple[Category | None, str]:
    """The category a transformers config.json (and the sentence-transformers files beside it) names,
    with the reason in words; None when the architecture is none Corral has a category for."""
    archs = [a for a in config.get("architectures") or () if isinstance(a, str)]
    arch = archs[0] if archs else ""
    sentence = (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file()
    if arch.endswith("ForSequenceClassification"):
        return Category.RERANK, f"config.json architectures {arch} (a cross-encoder: reranker)"
    if _VLM_ARCHS.search(arch) or (arch.endswith("ForConditionalGeneration") and "vision_config" in config):
        return Category.MULTIMODAL, f"config.json architectures {arch} with a vision tower (vision-language)"
    if arch.endswith(("ForCausalLM", "LMHeadModel")):
        return Category.TEXT_GENERATION, f"config.json architectures {arch} (a causal LM)"
    if sentence:
        return Category.EMBEDDING, "sentence-transformers modules.json (an embedding model)"
    if _ENCODER_ARCHS.match(arch):
        return Category.EMBEDDING, f"config.json architectures {arch} (a bare encoder: embeddings)"
    return None, f"config.json architectures {arch or 'missing'}: no category Corral knows; pass --category"


def _embedding_dims(folder: Path, hidden: int | None) -> tuple[int | None, list[Path]]:
    """Output width of a sentence-transformers pipeline: Pooling's width, a Dense module's overriding it."""
    dims, files = hidden, []
    modules_path = folder / "modules.json"
    modules = read_json(modules_path) if modules_path.is_file() else []
    if not isinstance(modules, list):
        raise DetectionError(f"{modules_path}: expected a JSON list of modules")
    for module in modules[:32]:
        if not isinstance(module, dict) or not isinstance(module.get("path"), str) or not module["path"]:
            continue
        sub = _inside(folder, module["path"])
        cfg = sub / "config.json"
        if not cfg.is_file():
            continue
        files += sorted(p for p in sub.iterdir() if p.is_file())
        data = _read_object(cfg)
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            dims = _pooling_width(data) or dims
        elif kind.endswith("Dense") and _int(data.get("out_features")):
            dims = data["out_features"]
    if not modules and (folder / "1_Pooling" / "config.json").is_file():
        data = _read_object(folder / "1_Pooling" / "config.json")
        dims = _pooling_width(data) or dims
        files.append(folder / "1_Pooling" / "config.json")
    return dims, files


_LEGACY_POOLING_MODES = (
    "pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken",
)


def _pooling_width(config: dict) -> int | None:
    """A Pooling module's output: token width times the number of concatenated pooling modes.

    sentence-transformers 6 writes ``embedding_dimension`` and ``pooling_mode`` (a name or a list);
    older releases write ``word_embedding_dimension`` and one boolean per mode.
    """
    width = _int(config.get("embedding_dimension")) or _int(config.get("word_embedding_dimension"))
    if not width:
        return None
    mode = config.get("pooling_mode")
    if isinstance(mode, list):
        count = len(mode[:16])
    elif isinstance(mode, str):
        count = 1
    else:
        count = sum(1 for key in _LEGACY_POOLING_MODES if config.get(key) is True)
    return width * max(count, 1)


def _chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return False
    data = read_json(path, MAX_TOKENIZER_CONFIG)
    return isinstance(data, dict) and bool(data.get("chat_template"))


def _detect_hf(folder: Path, config: dict, allow_unsafe: bool) -> Detection:
    files, kind = _weights(folder, ("model", "pytorch_model", "consolidated"))
    if not files:
        raise DetectionError(
            f"{folder} has config.json but no weight files (model.safetensors or pytorch_model.bin); "
            "finish the download or point at a complete model folder")
    category, why = category_from_config(config, folder)
    params, dtype, names, unsafe = _weights_facts(files, kind, allow_unsafe)
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    get = lambda *keys: _first(config, *keys) if _first(config, *keys) is not None else _first(text, *keys)  # noqa: E731
    hidden = _int(get("hidden_size", "n_embd", "d_model"))
    heads = _int(get("num_attention_heads", "n_head"))
    kv = _int(get("num_key_value_heads", "multi_query_group_num"))
    if kv is None and category in (Category.TEXT_GENERATION, Category.MULTIMODAL):
        kv = heads  # no key/value head count means plain multi-head attention
    dims, module_files = None, []
    if category == Category.EMBEDDING:
        dims, module_files = _embedding_dims(folder, hidden)
    torch_dtype = get("torch_dtype", "dtype")
    facts = Facts(
        architecture=str(config["model_type"]) if isinstance(config.get("model_type"), str) else None,
        parameters=params or None,
        context_length=_int(get("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")),
        embedding_dims=dims,
        layers=_int(get("num_hidden_layers", "n_layer", "num_layers")),
        heads=heads,
        kv_heads=kv,
        hidden_size=hidden,
        vocab_size=_int(get("vocab_size")),
        dtype=torch_dtype if isinstance(torch_dtype, str) else dtype,
        has_chat_template=_chat_template(folder),
        extra={"architectures": [a for a in config.get("architectures") or () if isinstance(a, str)][:8],
               "weights": kind},
    )
    reasons = [why, f"{len(files)} {kind} weight file(s)" + (f", {params} parameters" if params else "")]
    if facts.has_chat_template:
        reasons.append("a chat template in the tokenizer files")
    if unsafe:
        reasons.append(f"unsafe: {unsafe}; recorded because --allow-unsafe was given")
    paths = files + _small_files(folder, set(files)) + [p for p in module_files if p not in files]
    return Detection(
        path=folder, kind=Kind.MODEL, format=Format.HF_DIR, category=category,
        confidence=0.95 if category else 0.3, reasons=tuple(reasons), facts=facts,
        paths=tuple(paths), size=_size(paths), unsafe=unsafe,
    )


# --- diffusers -------------------------------------------------------------------------------------


def _pipeline_family(name: str) -> tuple[str | None, tuple[str, ...]]:
    low = name.lower()
    if name.startswith("Wan") or "video" in low:
        tags = VIDEO_TAGS + (("image-to-video",) if "imagetovideo" in low or "i2v" in low else ())
        return (WAN if name.startswith("Wan") else None), tags
    family = (FLUX if "flux" in low else SD3 if "stablediffusion3" in low else
              SDXL if "stablediffusionxl" in low else SD if "stablediffusion" in low else None)
    tags = ("text-to-image",)
    if family or "img2img" in low or "inpaint" in low:
        tags = IMAGE_TAGS
    return family, tags


def _detect_diffusers(folder: Path, index: dict, allow_unsafe: bool) -> Detection:
    pipeline = index.get("_class_name")
    if not isinstance(pipeline, str) or not pipeline:
        raise DetectionError(f"{folder / 'model_index.json'}: no _class_name; re-download the file")
    components = sorted(k for k, v in index.items()
                        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0])
    weights, small, params, unsafe = [], [], 0, None
    for name in components[:32]:
        sub = _inside(folder, name)
        if not sub.is_dir():
            continue
        files, kind = _weights(sub)
        if files:
            p, _dtype, _names, bad = _weights_facts(files, kind, allow_unsafe)
            params += p or 0
            unsafe = unsafe or bad
        weights += files
        small += _small_files(sub, set(files))
    if not weights:
        raise DetectionError(f"{folder} has model_index.json but no weight files in its component folders; "
                             "finish the download or point at a complete pipeline folder")
    family, tags = _pipeline_family(pipeline)
    facts = Facts(architecture=family, pipeline=pipeline, parameters=params or None,
                  extra={"tags": list(tags), "components": components})
    reasons = [f"model_index.json: a diffusers {pipeline} with {', '.join(components)}",
               f"{len(weights)} weight file(s)" + (f", {params} parameters" if params else "")]
    paths = weights + [folder / "model_index.json"] + small
    return Detection(path=folder, kind=Kind.MODEL, format=Format.DIFFUSERS_DIR, category=Category.IMAGE,
                     confidence=0.95, reasons=tuple(reasons), facts=facts, paths=tuple(paths),
                     size=_size(paths), unsafe=unsafe)


# --- PEFT ------------------------------------------------------------------------------------------


def _detect_peft(folder: Path, config: dict, allow_unsafe: bool) -> Detection:
    files = [p for p in (folder / "adapter_model.safetensors", folder / "adapter_model.bin") if p.is_file()][:1]
    if not files:
        raise DetectionError(f"{folder} has adapter_config.json but no adapter_model.safetensors or "
                             "adapter_model.bin; finish the download")
    kind = "safetensors" if files[0].suffix == ".safetensors" else "pickle"
    params, dtype, _names, unsafe = _weights_facts(files, kind, allow_unsafe)
    targets = config.get("target_modules")
    targets = [targets] if isinstance(targets, str) else [t for t in targets or () if isinstance(t, str)][:64]
    alpha = config.get("lora_alpha")
    base = config.get("base_model_name_or_path")
    peft_type = str(config.get("peft_type") or "LORA")
    facts = Facts(
        parameters=params or None, dtype=dtype, lora_rank=_int(config.get("r")),
        lora_alpha=float(alpha) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) else None,
        base_model=base if isinstance(base, str) else None,
        extra={"target_modules": targets, "peft_type": peft_type,
               "task_type": config.get("task_type") if isinstance(config.get("task_type"), str) else None},
    )
    reasons = [f"adapter_config.json: a PEFT {peft_type} adapter (rank {facts.lora_rank})"
               + (f" for {facts.base_model}" if facts.base_model else "")]
    category = Category.TEXT_GENERATION if config.get("task_type") == "CAUSAL_LM" else None
    paths = files + _small_files(folder, set(files))
    return Detection(path=folder, kind=Kind.LORA, format=Format.HF_DIR, category=category,
                     confidence=0.95 if peft_type == "LORA" else 0.6, reasons=tuple(reasons), facts=facts,
                     paths=tuple(paths), size=_size(paths), unsafe=unsafe)


# --- the folder dispatcher -------------------------------------------------------------------------


def _loose_model_file(folder: Path) -> Path | None:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _LOOSE_SUFFIXES]
    if len(files) > 1 and all(p.suffix.lower() == ".gguf" for p in files):
        # a GGUF with its multimodal projector: the projector is found beside the model by GGUF detection
        files = [p for p in files if "mmproj" not in p.name.lower()]
    return files[0] if len(files) == 1 else None


def detect_directory(path: Path, *, allow_unsafe: bool = False,
                     detect_file: Callable[..., Detection] | None = None) -> Detection:
    """Detect a model folder by its JSON files and weight headers.

    Looks, in order, for model_index.json (diffusers), adapter_config.json (PEFT), a Kokoro layout,
    config.json (transformers / sentence-transformers), then a single loose model file.

    :param allow_unsafe: record pickle weights that import non-allow-listed globals (``unsafe`` set).
    :param detect_file: detects the single loose model file of a folder that has nothing else
        (:func:`corral.detect.detect_path` passes itself); without it such a folder is refused.
    :raises UnsafeFile: pickle weights are unsafe and ``allow_unsafe`` is False.
    :raises DetectionError: nothing usable, malformed JSON, or weights missing.
    """
    folder = Path(path)
    if (folder / "model_index.json").is_file():
        return _detect_diffusers(folder, _read_object(folder / "model_index.json"), allow_unsafe)
    if (folder / "adapter_config.json").is_file():
        return _detect_peft(folder, _read_object(folder / "adapter_config.json"), allow_unsafe)
    from corral.detect.kokoro import detect_kokoro_dir, kokoro_layout

    if kokoro_layout(folder) is not None:
        return detect_kokoro_dir(folder, allow_unsafe=allow_unsafe)
    if (folder / "config.json").is_file():
        config = _read_object(folder / "config.json")
        if isinstance(config.get("_class_name"), str) and "architectures" not in config:
            return _detect_diffusers_component(folder, config, allow_unsafe)
        return _detect_hf(folder, config, allow_unsafe)
    loose = _loose_model_file(folder)
    if loose is not None and detect_file is not None:
        return detect_file(loose, allow_unsafe=allow_unsafe)
    raise DetectionError(
        f"{folder}: no model found (looked for config.json, model_index.json, adapter_config.json, "
        "a Kokoro layout, or a single model file)")


def _detect_diffusers_component(folder: Path, config: dict, allow_unsafe: bool) -> Detection:
    """One component folder of a diffusers pipeline (vae/, unet/, transformer/): classified by tensors."""
    from corral.detect.tensors import classify

    files, kind = _weights(folder)
    if not files:
        raise DetectionError(f"{folder} has config.json but no weight files; finish the download")
    _params, _dtype, names, unsafe = _weights_facts(files, kind, allow_unsafe)
    shapes: dict = dict.fromkeys(names)
    if kind == "safetensors":
        for f in files:  # shapes matter here (a CLIP's width), the facts helper keeps only names
            shapes.update({n: t.shape for n, t in read_header(f).tensors.items()})
    verdict = classify(shapes)
    paths = files + _small_files(folder, set(files))
    reasons = (f"config.json: a diffusers {config['_class_name']} folder",) + verdict.reasons
    return Detection(path=folder, kind=verdict.kind, format=Format.DIFFUSERS_DIR, category=verdict.category,
                     component=verdict.component, confidence=verdict.confidence, reasons=reasons,
                     facts=verdict.facts, paths=tuple(paths), size=_size(paths), unsafe=unsafe)
