"""A tiny random-weight Kokoro model in Kokoro-82M's layout, for tests and benchmarks.

:func:`write_tiny_kokoro` builds the modules through kokoro's own ``KModel`` from a small config (one
layer where Kokoro-82M has several, a small PL-BERT, short durations), saves their state dicts as
Kokoro-82M does (five state dicts, names prefixed ``module.``, no weights for the affine part of the
AdaIN instance norms), and writes random voice packs of the real shape. The decoder keeps Kokoro's fixed
widths, so the checkpoint is about 235 MB; it speaks noise, at 24 kHz, with durations that follow the
text and the speed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

#: Every symbol misaki writes for American and British English and for Mandarin (Kokoro-82M's phoneme set).
PHONEMES = (
    ';:,.!?¡¿—…"«»“” '
    "ʣʥʦʨᵝꭧAIOQSTWYᵊabcdefhijklmnopqrstuvwxyzɑɐɒæβɔɕçɖðʤəɚɛɜɟɡɥɨɪʝɯɰŋɳɲɴøɸθœɹɾɻʁɽʂʃʈʧʊʋʌɣɤχʎʒʔˈˌːʰʲ↓→↗↘ᵻ"
)

#: Voices written by default: one per language the driver speaks.
TINY_VOICES = ("af_heart", "bf_emma", "zf_xiaobei")


def tiny_config(max_dur: int = 4) -> dict[str, Any]:
    """A Kokoro config.json for a small model. ``max_dur`` bounds each phoneme's frames (Kokoro-82M: 50;
    random weights give about half of it, so small keeps the speech, and the test, short)."""
    return {
        "istftnet": {
            # Kokoro-82M: rates [10, 6], hop 5, n_fft 20. The same 300 samples per step come out of a
            # shorter generator and a longer inverse STFT here: about ten times less work on a CPU.
            "upsample_kernel_sizes": [4, 12], "upsample_rates": [2, 6], "gen_istft_hop_size": 25,
            "gen_istft_n_fft": 100, "resblock_dilation_sizes": [[1, 3, 5]], "resblock_kernel_sizes": [3],
            "upsample_initial_channel": 512,
        },
        "dim_in": 64, "dropout": 0.2, "hidden_dim": 512, "max_conv_dim": 512, "max_dur": max_dur,
        "multispeaker": True, "n_layer": 1, "n_mels": 80, "n_token": 178, "style_dim": 128,
        "text_encoder_kernel_size": 5,
        "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.1},
        "vocab": {symbol: i + 1 for i, symbol in enumerate(dict.fromkeys(PHONEMES))},
    }


def write_tiny_kokoro(folder: Path, voices: tuple[str, ...] = TINY_VOICES, *, seed: int = 0,
                      config: dict[str, Any] | None = None) -> Path:
    """Write config.json, kokoro-v1_0.pth and voices/NAME.pt (shape (510, 1, 256)) into ``folder``."""
    import warnings

    import torch
    from kokoro import KModel

    folder = Path(folder)
    (folder / "voices").mkdir(parents=True, exist_ok=True)
    config = config or tiny_config()
    (folder / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    generator = torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmodel = KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=empty)
    state = {}
    for key in ("bert", "bert_encoder", "predictor", "text_encoder", "decoder"):
        module = getattr(kmodel, key)
        # Kokoro-82M has no weights for the affine part of its AdaIN instance norms (trained without it).
        norms = {f"{name}.{p}" for name, child in module.named_modules()
                 if isinstance(child, torch.nn.InstanceNorm1d) for p in ("weight", "bias")}
        state[key] = {f"module.{name}": tensor for name, tensor in module.state_dict().items() if name not in norms}
    torch.save(state, folder / "kokoro-v1_0.pth")
    for voice in voices:
        pack = torch.randn(510, 1, 2 * config["style_dim"], generator=generator) * 0.2
        torch.save(pack, folder / "voices" / f"{voice}.pt")
    return folder
