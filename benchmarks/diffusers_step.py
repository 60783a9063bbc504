"""Image generation: seconds per denoising step through Corral (library → driver → ``imagine``) against the
raw diffusers pipeline, same folder, same size, steps, seed, device and precision, timed in alternating
rounds in one process.

Builds a small random-weight SDXL-style pipeline (a three-level UNet, two CLIP text encoders) unless
``--model DIR`` names a diffusers pipeline folder. Checks both sides make the same image, then prints each
side's best and median seconds per step and the ratio Corral / raw (goal ≤ 1.03; 1.0 means no overhead)
two ways: best against best, and the median of each round's ratio (robust when other work shares the CPU).

    python benchmarks/diffusers_step.py [--model DIR] [--size 128] [--steps 4] [--rounds 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from corral.testing import open_model

PROMPT = "a lighthouse on a cliff at dusk, oil painting"


def build_small_sdxl(folder: Path) -> Path:
    """A random-weight SDXL-style pipeline, big enough that a step costs more than the bookkeeping."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({c + "</w>": len(vocab) + i for i, c in enumerate(letters)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    tok.model_max_length = 77
    clip = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                intermediate_size=512, num_attention_heads=4, num_hidden_layers=4, vocab_size=len(tok),
                max_position_embeddings=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(64, 128, 256), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4, 8),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=32,
        transformer_layers_per_block=(1, 1, 1), projection_class_embeddings_input_dim=6 * 32 + 128,
        cross_attention_dim=256, norm_num_groups=32)
    vae = AutoencoderKL(block_out_channels=[32, 64, 64, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                        norm_num_groups=32)
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=unet, tokenizer=tok, tokenizer_2=tok,
        text_encoder=CLIPTextModel(CLIPTextConfig(hidden_size=128, projection_dim=128, **clip)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=128, projection_dim=128, **clip)),
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         steps_offset=1, timestep_spacing="leading"))
    pipe.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A diffusers pipeline folder (default: a small random SDXL).")
    parser.add_argument("--size", type=int, default=128, help="Image width and height.")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["CORRAL_HOME"] = home
        import numpy as np
        import torch
        from diffusers import DiffusionPipeline
        from diffusers.utils import logging as diffusers_logging

        from corral.library import open_library

        diffusers_logging.disable_progress_bar()

        folder = (args.model or build_small_sdxl(Path(home) / "small-sdxl")).resolve()
        library = open_library(Path(home))
        library.import_path(folder, name="bench")
        library.update_settings("bench", {"device": args.device, "dtype": "fp32"})
        raw = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        raw.to(args.device)
        raw.set_progress_bar_config(disable=True)
        size = {"width": args.size, "height": args.size}

        with open_model(library, "bench") as handle:
            def corral_run():
                start = time.perf_counter()
                image = handle.imagine(PROMPT, steps=args.steps, seed=1, **size)[0]
                return (time.perf_counter() - start) / args.steps, image

            def raw_run():
                start = time.perf_counter()
                image = raw(PROMPT, num_inference_steps=args.steps, generator=torch.Generator("cpu").manual_seed(1),
                            output_type="pil", **size).images[0]
                return (time.perf_counter() - start) / args.steps, image

            _, ours = corral_run()  # warm-up, and the outputs must agree
            _, theirs = raw_run()
            diff = int(np.abs(np.asarray(ours, dtype=int) - np.asarray(theirs, dtype=int)).max())
            corral_times, raw_times, ratios = [], [], []
            for n in range(args.rounds):
                pair = (corral_run, raw_run) if n % 2 == 0 else (raw_run, corral_run)
                first, second = pair[0]()[0], pair[1]()[0]
                c, r = (first, second) if n % 2 == 0 else (second, first)
                corral_times.append(c)
                raw_times.append(r)
                ratios.append(c / r)

    print(f"model: {folder.name}  size {args.size}x{args.size}  steps {args.steps}  device {args.device}  "
          f"rounds {args.rounds}  image max pixel diff {diff}")
    print(f"corral  s/step: best {min(corral_times):.4f}  median {statistics.median(corral_times):.4f}")
    print(f"raw     s/step: best {min(raw_times):.4f}  median {statistics.median(raw_times):.4f}")
    print(f"ratio corral/raw (<= 1.03 is the goal): best/best {min(corral_times) / min(raw_times):.3f}  "
          f"median of rounds {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
