"""Tiny random-weight image pipelines built through diffusers and transformers configs, and the files users
keep them as: a diffusers folder, a config-only folder, a denoiser single file with separate VAE and text
encoder files (the VAE in the original LDM layout), a GGUF denoiser, and LoRA adapters.

Everything is built offline: the tokenizers are made here from a character vocabulary.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

CHARS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
#: Token budget of the tiny text encoders (the pipelines pad prompts to it).
MAX_TOKENS = 16
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")


# --- tokenizers ------------------------------------------------------------------------------------


def clip_tokenizer():
    """A CLIP BPE tokenizer over single letters (no merges)."""
    from transformers import CLIPTokenizer

    vocab = {c: i for i, c in enumerate(CHARS)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(CHARS)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = MAX_TOKENS
    return tok


def t5_tokenizer():
    """A T5 unigram tokenizer over single letters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + c, -1.0) for c in CHARS] + [(c, -2.0) for c in CHARS]
    tok = T5Tokenizer(vocab=pieces, extra_ids=0)
    tok.model_max_length = MAX_TOKENS
    return tok


def _clip_config(tok, width: int = 32):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                          hidden_size=width, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=len(tok), projection_dim=width, max_position_embeddings=MAX_TOKENS)


# --- pipelines -------------------------------------------------------------------------------------


def tiny_sdxl(clip_g_width: int = 32):
    """An SDXL-style pipeline: a text_time UNet, a 2-level VAE, CLIP-L and CLIP-G style text encoders
    (CLIP-G ``clip_g_width`` wide: single-file loaders tell the two apart by width, as 768 vs 1280)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tok = clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + clip_g_width, cross_attention_dim=32 + clip_g_width,
        norm_num_groups=4)
    torch.manual_seed(1)
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        sample_size=64, norm_num_groups=4)
    torch.manual_seed(2)
    clip_l = CLIPTextModel(_clip_config(tok))
    torch.manual_seed(3)
    clip_g = CLIPTextModelWithProjection(_clip_config(tok, clip_g_width))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=clip_l, text_encoder_2=clip_g, tokenizer=tok,
                                     tokenizer_2=tok, unet=unet, scheduler=scheduler)


def tiny_sd15():
    """A Stable Diffusion 1.x-style pipeline: a 2-level UNet, a 2-level VAE and one CLIP text encoder."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    tok = clip_tokenizer()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=4,
                                out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4, norm_num_groups=4)
    torch.manual_seed(1)
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=4)
    torch.manual_seed(2)
    clip_l = CLIPTextModel(_clip_config(tok))
    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    return StableDiffusionPipeline(vae=vae, text_encoder=clip_l, tokenizer=tok, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def tiny_flux():
    """A FLUX-style pipeline: a one-double, one-single block transformer, a 1-level VAE, CLIP-L and T5."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tok, tok5 = clip_tokenizer(), t5_tokenizer()
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    torch.manual_seed(1)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    torch.manual_seed(2)
    clip_l = CLIPTextModel(_clip_config(tok))
    torch.manual_seed(3)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok5), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0,
                                 eos_token_id=1))
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), text_encoder=clip_l, text_encoder_2=t5,
                        tokenizer=tok, tokenizer_2=tok5, transformer=transformer, vae=vae)


def tiny_wan():
    """A Wan-style text-to-video pipeline: a 2-layer 3D transformer, a Wan VAE and a UMT5 encoder."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    tok5 = t5_tokenizer()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    torch.manual_seed(1)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tok5), d_model=32, d_kv=8, d_ff=37, num_layers=2,
                                               num_heads=4, relative_attention_num_buckets=8,
                                               decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))
    torch.manual_seed(2)
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
                                        num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                        rope_max_seq_len=32)
    return WanPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                       text_encoder=text_encoder, tokenizer=tok5, transformer_2=None)


# --- the files users have --------------------------------------------------------------------------


def config_only(pipeline_dir: Path, dest: Path) -> Path:
    """A copy of a diffusers folder without its weights: configs, scheduler and tokenizers only."""
    def ignore(_folder, names):
        return [n for n in names if n.endswith(_WEIGHT_SUFFIXES)]

    shutil.copytree(pipeline_dir, dest, ignore=ignore)
    return dest


def ldm_vae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict in the original (LDM) layout that VAE files such as FLUX's
    ``ae.safetensors`` and ``sdxl_vae.safetensors`` use."""
    ups = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", new)
        new = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", new)
        new = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{ups - 1 - int(m.group(1))}.block.", new)
        new = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{ups - 1 - int(m.group(1))}.upsample.", new)
        new = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m.group(1)) + 1}.", new)
        if ".mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
                new = new.replace(f".{a}.", f".{b}.")
            if value.ndim == 2:  # LDM keeps the attention projections as 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value.contiguous()
    return out


_RESNET_TO_LDM = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                  ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def ldm_unet(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """A diffusers UNet state dict in the original LDM layout (``input_blocks``, ``middle_block``,
    ``output_blocks``), as single-file Stable Diffusion checkpoints hold it."""
    per_down, per_up = layers_per_block + 1, layers_per_block + 1  # a down block's downsampler takes a slot
    attention_up = {int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}

    def resnet(rest: str) -> str:
        for a, b in _RESNET_TO_LDM:
            rest = rest.replace(f"{a}.", f"{b}.", 1) if rest.startswith(f"{a}.") else rest
        return rest

    out = {}
    for key, value in state.items():
        name, _, leaf = key.rpartition(".")
        if name in _UNET_FIXED:
            new = f"{_UNET_FIXED[name]}.{leaf}"
        elif m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            slot = 1 + int(m.group(1)) * per_down + int(m.group(3))
            new = f"input_blocks.{slot}.0.{resnet(m.group(4))}" if m.group(2) == "resnets" else \
                f"input_blocks.{slot}.1.{m.group(4)}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{1 + int(m.group(1)) * per_down + layers_per_block}.0.op.{m.group(2)}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m.group(1))}.{resnet(m.group(2))}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m.group(1)}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            slot = int(m.group(1)) * per_up + int(m.group(3))
            new = f"output_blocks.{slot}.0.{resnet(m.group(4))}" if m.group(2) == "resnets" else \
                f"output_blocks.{slot}.1.{m.group(4)}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            block = int(m.group(1))
            new = f"output_blocks.{block * per_up + layers_per_block}.{2 if block in attention_up else 1}.conv." \
                  f"{m.group(2)}"
        else:
            raise ValueError(f"no LDM name for UNet tensor {key}")
        out[new] = value.detach().contiguous()
    return out


def write_all_in_one(pipe, path: Path) -> Path:
    """A Stable Diffusion 1.x single-file checkpoint: the UNet, VAE and text encoder in LDM layout, each
    under its prefix (``model.diffusion_model.``, ``first_stage_model.``, ``cond_stage_model.transformer.``)."""
    from safetensors.torch import save_file

    state = {f"model.diffusion_model.{k}": v
             for k, v in ldm_unet(pipe.unet.state_dict(), pipe.unet.config.layers_per_block).items()}
    state.update({f"first_stage_model.{k}": v for k, v in ldm_vae(pipe.vae.state_dict()).items()})
    state.update({f"cond_stage_model.transformer.{k}": v for k, v in _as_shared(pipe.text_encoder).items()})
    save_file(state, path)
    return path


def write_all_in_one_sdxl(pipe, path: Path) -> Path:
    """An SDXL single-file checkpoint as Stability AI ships them: the UNet and VAE in LDM layout, CLIP-L
    under ``conditioner.embedders.0.transformer.`` and CLIP-G in OpenCLIP layout under
    ``conditioner.embedders.1.model.``."""
    from safetensors.torch import save_file

    state = {f"model.diffusion_model.{k}": v
             for k, v in ldm_unet(pipe.unet.state_dict(), pipe.unet.config.layers_per_block).items()}
    state.update({f"first_stage_model.{k}": v for k, v in ldm_vae(pipe.vae.state_dict()).items()})
    state.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in _as_shared(pipe.text_encoder).items()})
    state.update({f"conditioner.embedders.1.model.{k}": v for k, v in open_clip(pipe.text_encoder_2).items()})
    save_file(state, path)
    return path


def open_clip(encoder) -> dict[str, torch.Tensor]:
    """A transformers ``CLIPTextModelWithProjection``'s weights in OpenCLIP's layout (fused q/k/v,
    ``resblocks``, ``ln_final``, a transposed ``text_projection``)."""
    state = encoder.state_dict()
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        "text_projection": state["text_projection.weight"].T,
    }
    for i in range(encoder.config.num_hidden_layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            for a, b in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{b}.{kind}"] = state[f"{src}{a}.{kind}"]
    return {k: v.detach().contiguous() for k, v in out.items()}


def save_parts(pipe, folder: Path, *, ldm: bool = True) -> dict[str, Path]:
    """The pipeline's denoiser, VAE and text encoders as separate single files, the way they are shared:
    the denoiser and text encoders in their library's layout, the VAE in the LDM layout (``ldm=True``)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    denoiser = "transformer" if getattr(pipe, "transformer", None) is not None else "unet"
    files = {denoiser: folder / f"{denoiser}.safetensors"}
    save_file(_contiguous(getattr(pipe, denoiser).state_dict()), files[denoiser])
    files["vae"] = folder / "vae.safetensors"
    vae = pipe.vae.state_dict()
    save_file(ldm_vae(vae) if ldm else _contiguous(vae), files["vae"])
    names = {"text_encoder": "clip_l", "text_encoder_2": "clip_g" if denoiser == "unet" else "t5xxl"}
    if type(pipe).__name__.startswith("Wan"):
        names = {"text_encoder": "umt5xxl"}
    for slot, name in names.items():
        module = getattr(pipe, slot, None)
        if module is not None:
            files[name] = folder / f"{name}.safetensors"
            save_file(_contiguous(_as_shared(module)), files[name])
    return files


def _as_shared(module) -> dict[str, torch.Tensor]:
    """A text encoder's tensors named as in the files people share: CLIP under ``text_model.``, T5 with its
    shared embedding only (transformers may save either without)."""
    state = module.state_dict()
    if type(module).__name__.startswith("CLIPText"):
        return {k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}": v
                for k, v in state.items()}
    return {k: v for k, v in state.items() if k != "encoder.embed_tokens.weight"}


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in state.items()}


def write_gguf_denoiser(state: dict[str, torch.Tensor], path: Path, arch: str = "flux") -> Path:
    """A GGUF denoiser as diffusers and ComfyUI-GGUF read it: Q8_0 where the rows allow, else F32."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for name, tensor in state.items():
        data = tensor.detach().float().numpy()
        if data.ndim == 2 and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_lora(pipe, folder: Path, *, seed: int, rank: int = 4) -> Path:
    """A LoRA made with PEFT on the pipeline's denoiser and saved with the pipeline's ``save_lora_weights``.

    Both LoRA matrices are random (not PEFT's zero start), so the adapter changes the output. It is made
    on a copy of the denoiser: ``pipe`` is left as it was.
    """
    import copy

    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    denoiser_name = "transformer" if getattr(pipe, "transformer", None) is not None else "unet"
    denoiser = copy.deepcopy(getattr(pipe, denoiser_name))
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    adapter = f"made_{seed}"
    denoiser.add_adapter(config, adapter_name=adapter)
    with torch.no_grad():
        for name, param in denoiser.named_parameters():
            if "lora_B" in name and adapter in name:
                param.normal_(0, 0.5)
    state = get_peft_model_state_dict(denoiser, adapter_name=adapter)
    folder.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(folder), **{f"{denoiser_name}_lora_layers": state})
    return folder


# --- comparing images ----------------------------------------------------------------------------


def pixels(image):
    """An image as an int array, for exact comparisons."""
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.int16)


def same(a, b) -> bool:
    """Same size, same pixels."""
    return a.size == b.size and bool((pixels(a) == pixels(b)).all())


def same_but_rounding(a, b) -> bool:
    """Same size, every pixel within one level: the same weights computed through other buffers (a
    checkpoint converted in memory) may round the last float bit differently."""
    return a.size == b.size and int(abs(pixels(a) - pixels(b)).max()) <= 1
