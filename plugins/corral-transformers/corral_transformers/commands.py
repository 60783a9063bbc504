"""``corral create`` and ``corral tokenizer train``.

Only click and Corral are imported here; torch, transformers, tokenizers and sentencepiece are imported
when a command needs them (``corral --help`` builds these commands).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from corral.api import App, emit_json, human_size, json_option, pass_app
from corral_transformers import spec as specs
from corral_transformers.tokenizer_train import DEFAULT_VOCAB, TYPES


class ProgressLine:
    """Progress on stderr: one rewritten line on a terminal, a line per tenth otherwise."""

    def __init__(self, min_total: int = 64 * 1024 * 1024) -> None:
        self.min_total = min_total  # smaller files are written too fast to need a progress line
        self.tty = sys.stderr.isatty()
        self.label: str | None = None
        self.shown = -1

    def __call__(self, done: int, total: int | None, label: str) -> None:
        if label != self.label:
            self.finish()
            self.label, self.shown = label, -1
            if total is None:
                click.echo(f"{label}...", err=True)
                return
        if not total or total < self.min_total:
            return
        percent = min(100, done * 100 // total)
        step = percent if self.tty else percent // 10 * 10
        if step == self.shown:
            return
        self.shown = step
        line = f"Writing {label}: {percent:3d}% ({human_size(done)} of {human_size(total)})"
        click.echo(("\r" + line) if self.tty else line, err=True, nl=not self.tty)

    def finish(self) -> None:
        if self.tty and self.shown >= 0:
            click.echo(err=True)
        self.shown = -1


def print_preview(data: dict[str, Any], *, dry_run: bool) -> None:
    """The preview as aligned lines on stdout."""
    from corral_transformers.create import preview_rows

    rows = preview_rows(data)
    click.echo("Dry run: nothing is written." if dry_run else "Creating:")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"  {name.ljust(width)}  {value}")


@click.command("create")
@click.option("--preset", type=click.Choice(specs.PRESET_NAMES), default="small", show_default=True,
              help="small ~100M, medium ~500M, large ~1.1B parameters; free: give the shape yourself.")
@click.option("--vocab-size", type=int, help="Vocabulary size (10,000-100,000; default: the tokenizer's).")
@click.option("--hidden-size", type=int, help="Hidden size (128-8192).")
@click.option("--layers", type=int, help="Transformer layers (1-256).")
@click.option("--heads", type=int, help="Attention heads; must divide the hidden size.")
@click.option("--kv-heads", type=int, help="Key/value heads (grouped-query attention); must divide the heads.")
@click.option("--ffn-size", type=int, help="MLP width (128-65,536).")
@click.option("--context-length", type=int, help="Longest sequence in tokens (128-131,072).")
@click.option("--tie-embeddings/--no-tie-embeddings", default=None,
              help="Share the input embedding and output matrices.")
@click.option("--tokenizer", default="default", show_default=True, metavar="default|DIR",
              help="default: cl100k_base cut to the vocab size; or a tokenizer folder (corral tokenizer train).")
@click.option("--dtype", type=click.Choice(sorted(specs.BYTES_PER_PARAMETER)), default="float32", show_default=True,
              help="dtype of the written weights.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the initial weights.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Write into a directory that already holds files.")
@click.option("--dry-run", is_flag=True, help="Only show the preview; write nothing.")
@json_option
@pass_app
def create_cmd(app: App, preset, vocab_size, hidden_size, layers, heads, kv_heads, ffn_size, context_length,
               tie_embeddings, tokenizer, dtype, seed, out, force, dry_run, as_json) -> None:
    """Create a fresh, untrained Llama-style model as a Hugging Face directory and add it to the library."""
    from corral_transformers import create

    shape = dict(vocab_size=vocab_size, hidden_size=hidden_size, layers=layers, heads=heads, kv_heads=kv_heads,
                 ffn_size=ffn_size, context_length=context_length, tie_embeddings=tie_embeddings)
    plan = create.plan(preset, shape, out=out, tokenizer=tokenizer, dtype=dtype, seed=seed)
    if dry_run:
        if as_json:
            emit_json(plan.data)
        else:
            print_preview(plan.data, dry_run=True)
        return
    progress = ProgressLine()
    out, model = create.create(app.library, plan, force=force, progress=progress,
                               announce=None if as_json else lambda: print_preview(plan.data, dry_run=False))
    progress.finish()
    if as_json:
        emit_json({**plan.data, "path": str(out), "model": model})
        return
    click.echo(f"Wrote {out}")
    click.echo(f"Added to the library as {model.name} ({model.category})")


@click.group("tokenizer")
def tokenizer_group() -> None:
    """Train tokenizers for new models."""


@tokenizer_group.command("train")
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--type", "kind", type=click.Choice(TYPES), required=True,
              help="sentencepiece: unigram, best for Chinese/Japanese; bpe: byte-level BPE.")
@click.option("--vocab-size", type=int, default=DEFAULT_VOCAB, show_default=True,
              help="Tokens in the vocabulary (8,000-50,000; 16,000-32,000 recommended).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Write into a directory that already holds files.")
@click.option("--any-vocab-size", is_flag=True, hidden=True,
              help="Skip the vocab size range check (tests and experiments on tiny corpora).")
@json_option
def train_cmd(corpus, kind, vocab_size, out, force, any_vocab_size, as_json) -> None:
    """Train a tokenizer on CORPUS (UTF-8 text, one sentence per line) for `corral create --tokenizer`."""
    from corral_transformers.outdir import check_output_dir
    from corral_transformers.tokenizer_train import check_vocab_size, train

    note = check_vocab_size(vocab_size, any_size=any_vocab_size)
    out = check_output_dir(out, force=force)
    result = train(corpus, kind, vocab_size, out)
    if as_json:
        emit_json(result)
        return
    click.echo(f"Trained a {result['vocab_size']:,}-token {kind} tokenizer into {out}")
    click.echo(f"Use it: corral create --tokenizer {out} --out MODEL_DIR")
    if note:
        click.echo(note, err=True)
