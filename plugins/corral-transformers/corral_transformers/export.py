"""The ``hf-causal-lm`` exporter: a fresh, randomly initialised Llama-style model written as a standard
Hugging Face directory (config.json, model.safetensors, tokenizer files, generation_config.json).

torch and transformers are imported only inside :meth:`HfCausalLmExporter.export`.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, ClassVar, Mapping

import attrs

from corral.api import Exporter, Progress
from corral_transformers import default_tokenizer
from corral_transformers.spec import ARCHITECTURE, ModelSpec, validate

WEIGHTS = "model.safetensors"


def llama_config(spec: ModelSpec, *, special: Mapping[str, int | None] | None = None, dtype: str = "float32") -> Any:
    """The transformers ``LlamaConfig`` for ``spec`` (its ``architectures`` set, as a saved model's is)."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.ffn_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.context_length,
        tie_word_embeddings=spec.tie_embeddings,
        **(special or {}),
    )
    config.architectures = [ARCHITECTURE]
    # transformers 4.56 renamed torch_dtype to dtype; write the name the installed version reads.
    setattr(config, "dtype" if _transformers_at_least(4, 56) else "torch_dtype", dtype)
    return config


def _transformers_at_least(*wanted: int) -> bool:
    import transformers

    parts = []
    for part in transformers.__version__.split(".")[: len(wanted)]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts) >= wanted


def write_tokenizer(choice: str, vocab_size: int, out: Path, context_length: int) -> dict[str, int | None]:
    """Write the default tokenizer (``choice == "default"``) or re-save the one in directory ``choice``;
    return the special token ids for the model config."""
    from corral_transformers.hf_tokenizer import load_tokenizer, save_fast_tokenizer, special_ids

    if choice == "default":
        tokenizer = save_fast_tokenizer(
            default_tokenizer.build(vocab_size), out, model_max_length=context_length,
            bos_token=default_tokenizer.EOS, eos_token=default_tokenizer.EOS, pad_token=default_tokenizer.PAD,
        )
    else:
        from corral_transformers.hf_tokenizer import portable_config

        source = Path(choice)
        tokenizer = load_tokenizer(source)
        tokenizer.model_max_length = context_length
        tokenizer.save_pretrained(str(out))
        portable_config(out)
        # A fast tokenizer re-saves tokenizer.json only; keep the SentencePiece model for its own users.
        if (source / "tokenizer.model").is_file() and not (out / "tokenizer.model").exists():
            shutil.copyfile(source / "tokenizer.model", out / "tokenizer.model")
    return special_ids(tokenizer)


def build_model(config: Any, seed: int) -> Any:
    """The model transformers builds from ``config``, initialised from ``seed``."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    # Initialise in fp32 whatever dtype the files get: bf16 rounding happens once, when writing. A copy
    # of the config, because from_config records the dtype it built with in the config it is given.
    dtype_arg = "dtype" if _transformers_at_least(4, 56) else "torch_dtype"
    return AutoModelForCausalLM.from_config(copy.deepcopy(config), **{dtype_arg: torch.float32})


class HfCausalLmExporter(Exporter):
    """A new, untrained causal LM in the Hugging Face layout, ready for pre-training."""

    name: ClassVar[str] = "hf-causal-lm"
    distribution: ClassVar[str] = "corral-transformers"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers", "tokenizers", "safetensors")
    description: ClassVar[str] = "fresh Llama-style causal LM (random weights) as a Hugging Face directory"

    def export(self, out: Path, options: Mapping[str, Any], progress: Progress | None = None) -> Path:
        """Write the model ``options["spec"]`` describes into ``out``.

        Options: ``spec`` (a :class:`ModelSpec` or its fields), ``tokenizer`` ("default" or a tokenizer
        directory), ``seed`` (default 0), ``dtype`` ("float32" or "bfloat16"). ``out`` is checked by the
        caller; files appear there only once all of them are complete.
        """
        from corral_transformers import safetensors_stream
        from corral_transformers.outdir import staged

        spec = options["spec"]
        spec = validate(spec if isinstance(spec, ModelSpec) else ModelSpec(**spec))
        dtype = options.get("dtype", "float32")
        seed = int(options.get("seed", 0))
        report = progress or (lambda done, total, label: None)
        out = Path(out)
        with staged(out) as stage:
            report(0, None, "Writing the tokenizer")
            special = write_tokenizer(str(options.get("tokenizer", "default")), spec.vocab_size, stage,
                                      spec.context_length)
            config = llama_config(spec, special=special, dtype=dtype)
            report(0, None, "Initialising the weights")
            model = build_model(config, seed)
            # named_parameters lists a tied lm_head once, under the embedding's name, as save_pretrained does.
            safetensors_stream.save(
                model.named_parameters(), stage / WEIGHTS, dtype=dtype,
                progress=lambda done, total: report(done, total, WEIGHTS),
            )
            del model
            _generation_config(config).save_pretrained(str(stage))
            config.save_pretrained(str(stage))
            (stage / "corral_create.json").write_text(json.dumps(
                {"spec": attrs.asdict(spec), "seed": seed, "dtype": dtype,
                 "tokenizer": str(options.get("tokenizer", "default"))}, indent=2) + "\n")
        return out


def _generation_config(config: Any) -> Any:
    from transformers import GenerationConfig

    generation = GenerationConfig.from_model_config(config)
    if generation.pad_token_id is None:
        generation.pad_token_id = generation.eos_token_id
    return generation
