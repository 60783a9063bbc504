"""Kokoro real-time factor: seconds of compute per second of speech through Corral (library → driver →
``speak``) against kokoro's own ``KPipeline`` on the same ``KModel``, same text, voice and speed, timed in
alternating rounds in one process. Lower is faster; the ratio Corral / raw should stay near 1.0.

Both sides turn text into phonemes with misaki and synthesise chunk by chunk; Corral adds its checks,
voice lookup, joining and clipping. Mandarin runs kokoro's pipeline exactly as shipped
(``KPipeline(lang_code="z", model=kmodel)``). For English, kokoro's pipeline constructor insists on the
spaCy package ``en_core_web_sm`` (downloading it when missing); when that is not installed, the raw side
is ``KPipeline.__call__`` around misaki's G2P built on the spaCy pipeline Corral found.

Uses a tiny random-weight model written by ``corral_kokoro.testing`` (or ``--model DIR``, a Kokoro
folder such as Kokoro-82M with config.json, kokoro-v1_0.pth and voices/).

    python benchmarks/kokoro_rtf.py [--model DIR] [--rounds 7] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from corral.testing import open_model

ENGLISH = ("The old lighthouse keeper climbed the spiral stairs every evening, trimmed the wick, and watched "
           "the ships slide past the rocks. Nobody had thanked him in years, but the sea remembered.")
MANDARIN = "今天天气很好，我们一起去公园散步吧。湖边的柳树已经发芽了，孩子们在草地上放风筝。"


def raw_pipeline(lang: str, kmodel, corral_handle):
    """kokoro's KPipeline for ``lang`` on ``kmodel``: as shipped where it can be built offline."""
    import spacy.util
    from kokoro import KPipeline

    if lang == "z" or spacy.util.is_package("en_core_web_sm"):
        return KPipeline(lang_code=lang, repo_id="hexgrad/Kokoro-82M", model=kmodel), "KPipeline as shipped"
    from corral_kokoro.speech import LocalPipeline

    misaki = corral_handle.g2p_for(lang).g2p
    return LocalPipeline(lang, kmodel, misaki), "KPipeline.__call__ on misaki's G2P (no en_core_web_sm)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A Kokoro folder (default: a tiny random-weight one).")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice).")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "home"
        os.environ["CORRAL_HOME"] = str(home)
        import numpy as np
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from corral.library import open_library
        from corral_kokoro.loading import build_kmodel, read_voice
        from corral_kokoro.testing import write_tiny_kokoro

        folder = (args.model or write_tiny_kokoro(Path(scratch) / "Kokoro-tiny")).resolve()
        os.sync()  # the fresh 235 MB checkpoint's write-back would otherwise land in the first timings
        library = open_library(home)
        model = library.import_path(folder, name="bench").model
        library.update_settings("bench", {"device": args.device})
        results = {}
        with open_model(library, "bench") as handle:
            # The raw side gets its own KModel from the same files, as a kokoro user would build it.
            from corral_kokoro.loading import model_files

            config, checkpoint, voice_files = model_files(model)
            kmodel = build_kmodel(model, config, checkpoint, handle.device)
            for lang, text, voice in (("a", ENGLISH, "af_heart"), ("z", MANDARIN, "zf_xiaobei")):
                if voice not in voice_files:
                    voice = sorted(voice_files)[0]
                pack = read_voice(model.name, voice, voice_files[voice])
                pipeline, how = raw_pipeline(lang, kmodel, handle)

                def corral_run() -> tuple[float, int]:
                    start = time.perf_counter()
                    samples, _ = handle.speak(text, voice=voice, lang=lang)
                    return time.perf_counter() - start, len(samples)

                def raw_run() -> tuple[float, int]:
                    start = time.perf_counter()
                    audio = np.concatenate([r.audio.numpy() for r in pipeline(text, voice=pack) if r.audio is not None])
                    return time.perf_counter() - start, len(audio)

                corral_run(), raw_run()  # warm-up: G2P set-up, first-shape kernels
                corral_times, raw_times, lengths = [], [], set()
                for i in range(args.rounds):
                    # Alternate who goes first, so warm-up and drift fall on both sides alike.
                    pair = (corral_run, raw_run) if i % 2 == 0 else (raw_run, corral_run)
                    for run in pair:
                        elapsed, samples = run()
                        (corral_times if run is corral_run else raw_times).append(elapsed / (samples / 24000))
                        lengths.add(samples)
                results[lang] = (corral_times, raw_times, lengths, how, handle.g2p_paths.get(lang, "mandarin"))
        library.store.close()

    print(f"model: {folder.name}, device {args.device}, torch threads {torch.get_num_threads()}, "
          f"{args.rounds} rounds each, interleaved")
    for lang, (ours, raw, lengths, how, g2p) in results.items():
        seconds = sorted(lengths)[0] / 24000
        paired = statistics.median(c / r for c, r in zip(ours, raw))
        print(f"[{lang}] {seconds:.2f} s of speech per run ({g2p} G2P); raw side: {how}"
              + ("" if len(lengths) == 1 else f"; lengths differ between runs: {sorted(lengths)}"))
        print(f"    corral speak:  RTF {min(ours):.4f} best, {statistics.median(ours):.4f} median")
        print(f"    kokoro raw:    RTF {min(raw):.4f} best, {statistics.median(raw):.4f} median")
        print(f"    ratio corral / raw: {min(ours) / min(raw):.3f} best against best, {paired:.3f} median of "
              "per-round ratios (1.0 = no overhead; goal <= 1.03)")


if __name__ == "__main__":
    main()
