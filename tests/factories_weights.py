"""Tiny weight files and model folders for detection tests, written with numpy and safetensors.numpy.

Only the tensor names and the dimensions detection reads are realistic; everything else is kept tiny so
the whole suite writes a few kilobytes. torch is imported only inside the writers that need torch.save.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

Shapes = Mapping[str, tuple]


def write_safetensors(
    path: Path, tensors: Shapes, dtype: str = "float16", metadata: Mapping[str, str] | None = None
) -> Path:
    """A safetensors file with zero-filled tensors of the given shapes (name -> shape)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.zeros(shape, dtype=dtype) for name, shape in tensors.items()}
    save_file(arrays, str(path), metadata=dict(metadata) if metadata else None)
    return path


def numel(shape: tuple) -> int:
    """Elements in a tensor of ``shape``."""
    out = 1
    for d in shape:
        out *= d
    return out


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


# --- tensor-name sets ------------------------------------------------------------------------------


def llama_tensors(hidden: int = 64, layers: int = 2, vocab: int = 100, heads: int = 4, kv_heads: int = 2,
                  ffn: int = 128) -> dict[str, tuple]:
    """The state dict shapes of a transformers LlamaForCausalLM."""
    kv = hidden // heads * kv_heads
    out: dict[str, tuple] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        out.update({
            p + "self_attn.q_proj.weight": (hidden, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, hidden),
            p + "mlp.gate_proj.weight": (ffn, hidden),
            p + "mlp.up_proj.weight": (ffn, hidden),
            p + "mlp.down_proj.weight": (hidden, ffn),
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
        })
    out["model.norm.weight"] = (hidden,)
    out["lm_head.weight"] = (vocab, hidden)
    return out


def bert_tensors(hidden: int = 32, layers: int = 2, vocab: int = 300, ffn: int = 64, positions: int = 64,
                 prefix: str = "", pooler: bool = True) -> dict[str, tuple]:
    """The state dict shapes of a transformers BertModel (``prefix="bert."`` inside a task head)."""
    p = prefix
    out: dict[str, tuple] = {
        p + "embeddings.word_embeddings.weight": (vocab, hidden),
        p + "embeddings.position_embeddings.weight": (positions, hidden),
        p + "embeddings.token_type_embeddings.weight": (2, hidden),
        p + "embeddings.LayerNorm.weight": (hidden,),
        p + "embeddings.LayerNorm.bias": (hidden,),
    }
    for i in range(layers):
        q = f"{p}encoder.layer.{i}."
        for name in ("query", "key", "value"):
            out[q + f"attention.self.{name}.weight"] = (hidden, hidden)
            out[q + f"attention.self.{name}.bias"] = (hidden,)
        out.update({
            q + "attention.output.dense.weight": (hidden, hidden),
            q + "attention.output.dense.bias": (hidden,),
            q + "attention.output.LayerNorm.weight": (hidden,),
            q + "attention.output.LayerNorm.bias": (hidden,),
            q + "intermediate.dense.weight": (ffn, hidden),
            q + "intermediate.dense.bias": (ffn,),
            q + "output.dense.weight": (hidden, ffn),
            q + "output.dense.bias": (hidden,),
            q + "output.LayerNorm.weight": (hidden,),
            q + "output.LayerNorm.bias": (hidden,),
        })
    if pooler:
        out[p + "pooler.dense.weight"] = (hidden, hidden)
        out[p + "pooler.dense.bias"] = (hidden,)
    return out


def clip_text_tensors(hidden: int, prefix: str = "text_model.") -> dict[str, tuple]:
    """A CLIP text encoder; only the embedding and norm carry the real width."""
    p = prefix
    return {
        p + "embeddings.token_embedding.weight": (10, hidden),
        p + "embeddings.position_embedding.weight": (4, hidden),
        p + "encoder.layers.0.self_attn.q_proj.weight": (4, 4),
        p + "encoder.layers.0.self_attn.k_proj.weight": (4, 4),
        p + "encoder.layers.0.mlp.fc1.weight": (4, 4),
        p + "encoder.layers.0.layer_norm1.weight": (4,),
        p + "final_layer_norm.weight": (hidden,),
    }


def vae_tensors(prefix: str = "") -> dict[str, tuple]:
    """An original (ldm) layout AutoencoderKL, as in sd_vae / sdxl_vae single files."""
    p = prefix
    return {
        p + "encoder.conv_in.weight": (4, 3, 3, 3),
        p + "encoder.down.0.block.0.conv1.weight": (4, 4, 3, 3),
        p + "encoder.mid.attn_1.q.weight": (4, 4, 1, 1),
        p + "decoder.conv_in.weight": (4, 4, 3, 3),
        p + "decoder.up.0.block.0.conv1.weight": (4, 4, 3, 3),
        p + "quant_conv.weight": (8, 8, 1, 1),
        p + "post_quant_conv.weight": (4, 4, 1, 1),
    }


def unet_tensors() -> dict[str, tuple]:
    """A diffusers UNet2DConditionModel."""
    return {
        "conv_in.weight": (8, 4, 3, 3),
        "time_embedding.linear_1.weight": (16, 8),
        "down_blocks.0.resnets.0.conv1.weight": (8, 8, 3, 3),
        "down_blocks.0.attentions.0.proj_in.weight": (8, 8),
        "mid_block.resnets.0.conv1.weight": (8, 8, 3, 3),
        "up_blocks.0.resnets.0.conv1.weight": (8, 16, 3, 3),
        "conv_out.weight": (4, 8, 3, 3),
    }


# --- single files ----------------------------------------------------------------------------------


def write_llm_safetensors(path: Path) -> Path:
    """A decoder LLM (Llama tensor names, 2 layers, hidden 64)."""
    return write_safetensors(path, llama_tensors(), dtype="float16")


def write_sd_checkpoint(path: Path) -> Path:
    """A single-file Stable Diffusion checkpoint: UNet, VAE and text encoder under their ldm prefixes."""
    tensors: dict[str, tuple] = {
        "model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (8, 8),
        "model.diffusion_model.time_embed.0.weight": (16, 8),
        "model.diffusion_model.out.2.weight": (4, 8, 3, 3),
    }
    tensors.update(vae_tensors("first_stage_model."))
    tensors.update(clip_text_tensors(768, "cond_stage_model.transformer.text_model."))
    return write_safetensors(path, tensors)


def write_vae_safetensors(path: Path) -> Path:
    """A standalone VAE (ldm layout with quant_conv)."""
    return write_safetensors(path, vae_tensors())


def write_clip_l_safetensors(path: Path) -> Path:
    """A CLIP-L text encoder (width 768)."""
    return write_safetensors(path, clip_text_tensors(768))


def write_clip_g_safetensors(path: Path) -> Path:
    """A CLIP-G text encoder (width 1280)."""
    tensors = clip_text_tensors(1280)
    tensors["text_projection.weight"] = (4, 1280)
    return write_safetensors(path, tensors)


def write_t5_safetensors(path: Path) -> Path:
    """A T5 encoder as FLUX / SD3 pipelines take it (t5xxl)."""
    return write_safetensors(path, {
        "shared.weight": (10, 16),
        "encoder.block.0.layer.0.SelfAttention.q.weight": (16, 16),
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (32, 4),
        "encoder.block.0.layer.1.DenseReluDense.wi_0.weight": (32, 16),
        "encoder.block.1.layer.0.SelfAttention.q.weight": (16, 16),
        "encoder.final_layer_norm.weight": (16,),
    })


def write_flux_safetensors(path: Path) -> Path:
    """A FLUX transformer in the original (BFL) layout."""
    return write_safetensors(path, {
        "img_in.weight": (16, 8),
        "txt_in.weight": (16, 8),
        "time_in.in_layer.weight": (16, 4),
        "double_blocks.0.img_attn.qkv.weight": (48, 16),
        "double_blocks.0.txt_attn.qkv.weight": (48, 16),
        "single_blocks.0.linear1.weight": (64, 16),
        "single_blocks.1.linear1.weight": (64, 16),
        "final_layer.linear.weight": (8, 16),
    }, dtype="float16")


def write_kohya_lora_safetensors(path: Path, rank: int = 4) -> Path:
    """A kohya-style SD LoRA (lora_down / lora_up / alpha)."""
    tensors: dict[str, tuple] = {}
    for block in ("lora_unet_down_blocks_0_attentions_0_proj_in", "lora_te_text_model_encoder_layers_0_mlp_fc1"):
        tensors[f"{block}.lora_down.weight"] = (rank, 16)
        tensors[f"{block}.lora_up.weight"] = (16, rank)
        tensors[f"{block}.alpha"] = ()
    return write_safetensors(path, tensors, metadata={"ss_network_dim": str(rank), "ss_network_alpha": "4"})


def write_bert_safetensors(path: Path) -> Path:
    """A bare BERT encoder (sentence-transformers embedding weights)."""
    return write_safetensors(path, bert_tensors(pooler=False), dtype="float32")


# --- folders ---------------------------------------------------------------------------------------


def write_peft_lora_dir(dir: Path, hidden: int = 64, r: int = 4) -> Path:
    """A PEFT LoRA adapter for the tiny Llama of :func:`write_llm_dir`."""
    dir = Path(dir)
    _write_json(dir / "adapter_config.json", {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": "tiny-llama",
        "r": r,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
    })
    kv = hidden // 2
    tensors: dict[str, tuple] = {}
    for i in range(2):
        p = f"base_model.model.model.layers.{i}.self_attn."
        tensors[p + "q_proj.lora_A.weight"] = (r, hidden)
        tensors[p + "q_proj.lora_B.weight"] = (hidden, r)
        tensors[p + "v_proj.lora_A.weight"] = (r, hidden)
        tensors[p + "v_proj.lora_B.weight"] = (kv, r)
    write_safetensors(dir / "adapter_model.safetensors", tensors, dtype="float32")
    return dir


def write_llm_dir(dir: Path, hidden: int = 64) -> Path:
    """A 2-layer Llama causal LM folder with a chat template, as save_pretrained writes it."""
    dir = Path(dir)
    _write_json(dir / "config.json", {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "vocab_size": 100,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    })
    write_safetensors(dir / "model.safetensors", llama_tensors(hidden=hidden, ffn=2 * hidden), dtype="float32")
    _write_json(dir / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2})
    _write_json(dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "chat_template": "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}",
    })
    return dir


_WORDS = (
    "the a an of to in and or is are was were be been it this that with for on at by from as not but "
    "model data file load weight tensor layer head token text image voice sound query document answer "
    "question search rank score good bad fast slow small large red green blue cat dog bird fish tree "
    "house car road city river sea sky sun moon star day night time year one two three four five six "
    "seven eight nine ten hello world python code test run make take give get see know think say come go"
).split()


def write_wordpiece_vocab(path: Path, extra: int = 200) -> int:
    """A BERT WordPiece vocab.txt written locally; returns its size."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(dict.fromkeys(_WORDS))
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokens += list("abcdefghijklmnopqrstuvwxyz0123456789.,!?")
    tokens += [f"word{i}" for i in range(max(0, extra - len(tokens)))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n")
    return len(tokens)


def _bert_config(arch: str, hidden: int, vocab: int, **more: Any) -> dict[str, Any]:
    return {
        "architectures": [arch],
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 2 * hidden,
        "max_position_embeddings": 64,
        "vocab_size": vocab,
        "type_vocab_size": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "torch_dtype": "float32",
        **more,
    }


_BERT_TOKENIZER = {
    "tokenizer_class": "BertTokenizer",
    "do_lower_case": True,
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "model_max_length": 64,
}


def write_cross_encoder(dir: Path, hidden: int = 32) -> Path:
    """A tiny BERT cross-encoder as sentence-transformers' CrossEncoder saves it (one relevance label)."""
    dir = Path(dir)
    vocab = write_wordpiece_vocab(dir / "vocab.txt")
    _write_json(dir / "config.json", _bert_config(
        "BertForSequenceClassification", hidden, vocab,
        id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0},
    ))
    tensors = bert_tensors(hidden=hidden, vocab=vocab, ffn=2 * hidden, prefix="bert.")
    tensors["classifier.weight"] = (1, hidden)
    tensors["classifier.bias"] = (1,)
    write_safetensors(dir / "model.safetensors", tensors, dtype="float32")
    _write_json(dir / "tokenizer_config.json", _BERT_TOKENIZER)
    _write_json(dir / "special_tokens_map.json", {k: v for k, v in _BERT_TOKENIZER.items() if k.endswith("_token")})
    return dir


def write_embedding_dir(dir: Path, hidden: int = 32) -> Path:
    """A tiny sentence-transformers embedding model (BERT + mean pooling)."""
    dir = Path(dir)
    vocab = write_wordpiece_vocab(dir / "vocab.txt")
    _write_json(dir / "config.json", _bert_config("BertModel", hidden, vocab))
    write_safetensors(dir / "model.safetensors", bert_tensors(hidden=hidden, vocab=vocab, ffn=2 * hidden),
                      dtype="float32")
    _write_json(dir / "tokenizer_config.json", _BERT_TOKENIZER)
    _write_json(dir / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ])
    _write_json(dir / "config_sentence_transformers.json", {"__version__": {"sentence_transformers": "3.0.0"}})
    _write_json(dir / "sentence_bert_config.json", {"max_seq_length": 64, "do_lower_case": False})
    _write_json(dir / "1_Pooling" / "config.json", {"word_embedding_dimension": hidden,
                                                     "pooling_mode_mean_tokens": True})
    return dir


def write_diffusers_dir(dir: Path, pipeline: str = "StableDiffusionPipeline") -> Path:
    """A diffusers pipeline folder: model_index.json + unet/, vae/, text_encoder/ with tiny weights."""
    dir = Path(dir)
    _write_json(dir / "model_index.json", {
        "_class_name": pipeline,
        "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "PNDMScheduler"],
    })
    _write_json(dir / "unet" / "config.json", {"_class_name": "UNet2DConditionModel", "sample_size": 8})
    write_safetensors(dir / "unet" / "diffusion_pytorch_model.safetensors", unet_tensors())
    _write_json(dir / "vae" / "config.json", {"_class_name": "AutoencoderKL", "latent_channels": 4})
    write_safetensors(dir / "vae" / "diffusion_pytorch_model.safetensors", {
        "encoder.conv_in.weight": (4, 3, 3, 3),
        "encoder.down_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3),
        "decoder.up_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3),
        "quant_conv.weight": (8, 8, 1, 1),
    })
    _write_json(dir / "text_encoder" / "config.json", {"architectures": ["CLIPTextModel"], "hidden_size": 32})
    write_safetensors(dir / "text_encoder" / "model.safetensors", clip_text_tensors(32))
    _write_json(dir / "scheduler" / "scheduler_config.json", {"_class_name": "PNDMScheduler"})
    return dir


# --- pickles ---------------------------------------------------------------------------------------


def _unicode(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def malicious_pickle_bytes(target: Path, via: str = "system") -> bytes:
    """A pickle that creates ``target`` when unpickled.

    ``via="system"``: GLOBAL os.system("touch target"). ``via="exec"``: STACK_GLOBAL builtins.exec, its
    module and name pushed through the memo (BINPUT / BINGET) so a scanner must follow the memo.
    """
    if via == "system":
        return b"\x80\x02cos\nsystem\n(" + _unicode(f"touch '{target}'") + b"tR."
    if via == "exec":
        code = f"open({str(target)!r}, 'w').close()"
        return (
            b"\x80\x04" + _unicode("builtins") + b"q\x01" + _unicode("exec") + b"q\x02"
            + b"h\x01h\x02\x93(" + _unicode(code) + b"tR."
        )
    raise ValueError(f"unknown via {via!r}")


def write_malicious_pickle(path: Path, target: Path, *, zip: bool = False, via: str = "system") -> Path:
    """A .pth/.bin that would create ``target`` if ever unpickled; ``zip`` stores it as torch does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = malicious_pickle_bytes(Path(target), via)
    if zip:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", payload)
            z.writestr("archive/version", "3\n")
    else:
        path.write_bytes(payload)
    return path


def write_torch_checkpoint(path: Path, tensors: Shapes, *, legacy: bool = False) -> Path:
    """torch.save of a small state dict of zero tensors (``legacy`` = the pre-1.6 non-zip format)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: torch.zeros(shape) for name, shape in tensors.items()}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def write_oversized_zip_pickle(path: Path, declared: int = 2**40) -> Path:
    """A torch-like zip whose data.pkl member claims ``declared`` bytes (a zip bomb's central directory)."""
    path = Path(path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    raw = bytearray(buf.getvalue())
    # Patch the uncompressed size in the central directory entry (offset 24 from its signature).
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = struct.pack("<I", min(declared, 0xFFFFFFFE))
    path.write_bytes(bytes(raw))
    return path


KOKORO_CONFIG: dict[str, Any] = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_initial_channel": 512,
    },
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 512,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 3,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "max_position_embeddings": 512,
        "num_hidden_layers": 12,
        "dropout": 0.1,
    },
    "vocab": {c: i + 1 for i, c in enumerate(";:,.!?—…\"()“” abcdefghijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜ")},
}

KOKORO_VOICES = ("af_heart", "bf_emma", "zf_xiaobei")


def write_kokoro_dir(dir: Path, voices: tuple[str, ...] = KOKORO_VOICES) -> Path:
    """A Kokoro-82M-shaped folder: config.json, kokoro-v1_0.pth (nested state dicts), voices/*.pt."""
    import torch

    dir = Path(dir)
    _write_json(dir / "config.json", KOKORO_CONFIG)
    z = torch.zeros
    state = {
        "bert": {"module.embeddings.word_embeddings.weight": z(8, 4),
                 "module.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight": z(4, 4)},
        "bert_encoder": {"module.weight": z(4, 4), "module.bias": z(4)},
        "predictor": {"module.text_encoder.lstms.0.weight_ih_l0": z(8, 4), "module.F0_proj.weight": z(1, 4, 1)},
        "text_encoder": {"module.embedding.weight": z(8, 4), "module.cnn.0.0.weight_g": z(4, 1, 1)},
        "decoder": {"module.generator.conv_post.weight": z(2, 4, 7), "module.F0_conv.weight": z(1, 1, 3)},
    }
    torch.save(state, dir / "kokoro-v1_0.pth")
    (dir / "voices").mkdir(exist_ok=True)
    for voice in voices:
        torch.save(z(4, 1, 8), dir / "voices" / f"{voice}.pt")
    return dir
