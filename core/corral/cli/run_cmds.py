"""Commands that run a model in this process through its driver (chat, embed, rerank, imagine, speak),
and the hub commands that go through download-source plugins (search, files, pull).

Each answers with the plugin to install when no installed plugin can do the job.
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import click

from corral.cli.base import App, emit_json, human_size, json_option, pass_app, read_lines, table
from corral.errors import CorralError, PluginMissing
from corral.records import Category

lora_option = click.option("--lora", "loras", multiple=True, metavar="NAME[=WEIGHT]", help="LoRA to apply.")


@click.command("chat")
@click.argument("model")
@click.argument("prompt", required=False)
@lora_option
@click.option("--n-ctx", type=int, help="Context length for this run.")
@click.option("--temperature", type=float)
@click.option("--max-tokens", type=int)
@click.option("--seed", type=int)
@pass_app
def chat_cmd(app: App, model, prompt, loras, n_ctx, temperature, max_tokens, seed) -> None:
    """Chat with MODEL: one answer to PROMPT, or an interactive session without one."""
    overrides = {"n_ctx": n_ctx} if n_ctx is not None else {}
    params = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)) if v is not None}
    with app.library.open_model(model, loras=loras, overrides=overrides) as handle:
        if prompt is not None:
            for piece in handle.chat([{"role": "user", "content": prompt}], stream=True, **params):
                click.echo(piece, nl=False)
            click.echo()
            return
        history: list[dict] = []
        click.echo("Type a message; an empty line or Ctrl-D ends the chat.", err=True)
        while True:
            try:
                line = input(">>> ")
            except EOFError:
                break
            if not line.strip():
                break
            history.append({"role": "user", "content": line})
            answer = []
            for piece in handle.chat(history, stream=True, **params):
                answer.append(piece)
                click.echo(piece, nl=False)
            click.echo()
            history.append({"role": "assistant", "content": "".join(answer)})


@click.command("embed")
@click.argument("model")
@click.argument("texts", nargs=-1, required=True)
@json_option
@pass_app
def embed_cmd(app: App, model, texts, as_json) -> None:
    """Print one vector per TEXT as JSON (`-` reads one text per line from stdin)."""
    texts = read_lines(texts)
    with app.library.open_model(model) as handle:
        vectors = handle.embed(texts)
    emit_json(vectors if as_json else [list(map(float, v)) for v in vectors])


@click.command("rerank")
@click.argument("model")
@click.argument("query")
@click.argument("documents", nargs=-1, required=True)
@click.option("--top-k", type=int, help="Only the best K documents.")
@json_option
@pass_app
def rerank_cmd(app: App, model, query, documents, top_k, as_json) -> None:
    """Score DOCUMENTS against QUERY and print them best first."""
    with app.library.open_model(model) as handle:
        ranked = handle.rerank(query, list(documents), top_n=top_k)
    if as_json:
        emit_json([{"index": i, "score": float(s), "document": documents[i]} for i, s in ranked])
        return
    table([(f"{s:.4f}", i, documents[i]) for i, s in ranked], ["SCORE", "INDEX", "DOCUMENT"])


@click.command("imagine")
@click.argument("model")
@click.argument("prompt")
@click.option("--image", type=click.Path(exists=True, path_type=Path), help="Input image (image-to-image).")
@click.option("--strength", type=float)
@click.option("--steps", type=int)
@click.option("--guidance", type=float)
@click.option("--size", metavar="WxH")
@click.option("--seed", type=int)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output PNG (or folder for video).")
@pass_app
def imagine_cmd(app: App, model, prompt, image, strength, steps, guidance, size, seed, out) -> None:
    """Generate an image from PROMPT with MODEL into --out."""
    params = {"image": image, "strength": strength, "steps": steps, "guidance": guidance, "seed": seed}
    if size:
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"{size!r} is not WxH, e.g. 512x512", param_hint="--size") from None
        params.update(width=width, height=height)
    params = {k: v for k, v in params.items() if v is not None}
    with app.library.open_model(model) as handle:
        images = handle.imagine(prompt, **params)
    images[0].save(out)
    click.echo(f"Wrote {out}")


@click.command("speak")
@click.argument("model")
@click.argument("text")
@click.option("--voice")
@click.option("--speed", type=float)
@click.option("--lang", type=click.Choice(["a", "b", "z", "auto"]))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output .wav file.")
@pass_app
def speak_cmd(app: App, model, text, voice, speed, lang, out) -> None:
    """Synthesise TEXT with MODEL into a WAV file."""
    params = {k: v for k, v in (("voice", voice), ("speed", speed), ("lang", lang)) if v is not None}
    with app.library.open_model(model) as handle:
        samples, rate = handle.speak(text, **params)
    write_wav(out, samples, rate)
    click.echo(f"Wrote {out}")


def write_wav(path: Path, samples, rate: int) -> None:
    """16-bit mono WAV from float samples in [-1, 1]."""
    import array

    pcm = array.array("h", (int(max(-1.0, min(1.0, float(s))) * 32767) for s in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())


# --- hubs ---------------------------------------------------------------------------------------------

source_option = click.option("--source", default="huggingface", show_default=True, help="Hub to use.")


def _source(app: App, name: str):
    from corral import known

    cls = app.host.source(name)
    if cls is None:
        dist = known.source_distribution(name)
        raise PluginMissing(f"the {name} hub needs the {dist} plugin: pip install {dist}", distribution=dist)
    status = cls.check()
    if not status.available:
        raise PluginMissing(f"the {name} hub is not usable ({status.problem}); fix: {status.install}")
    return cls()


def split_ref(ref: str) -> tuple[str, str | None]:
    repo, _, revision = ref.partition(":")
    return repo, revision or None


@click.command("search")
@click.argument("query")
@source_option
@click.option("--category", type=click.Choice([c.value for c in Category]))
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@pass_app
def search_cmd(app: App, query, source, category, limit, as_json) -> None:
    """Search a hub for models matching QUERY."""
    hits = _source(app, source).search(query, category=Category(category) if category else None, limit=limit)
    if as_json:
        emit_json(hits)
        return
    table([(h.repo, h.downloads, h.likes, human_size(h.size)) for h in hits], ["REPO", "DOWNLOADS", "LIKES", "SIZE"])


@click.command("files")
@click.argument("ref", metavar="REPO[:REV]")
@source_option
@json_option
@pass_app
def files_cmd(app: App, ref, source, as_json) -> None:
    """List a hub repository's files with their sizes."""
    repo, revision = split_ref(ref)
    files = _source(app, source).files(repo, revision)
    if as_json:
        emit_json(files)
        return
    table([(f.name, human_size(f.size)) for f in files], ["FILE", "SIZE"])


@click.command("pull")
@click.argument("ref", metavar="REPO[:REV]")
@click.option("--file", "names", multiple=True, help="Only these files.")
@click.option("--quant", help="Only the GGUF files of this quantization (e.g. Q4_K_M).")
@source_option
@click.option("--dest", type=click.Path(path_type=Path), help="Download into this folder.")
@json_option
@pass_app
def pull_cmd(app: App, ref, names, quant, source, dest, as_json) -> None:
    """Download a model from a hub and add it to the library."""
    repo, revision = split_ref(ref)
    hub = _source(app, source)
    files = hub.files(repo, revision)
    if names:
        files = [f for f in files if f.name in names]
    if quant:
        files = [f for f in files if quant.lower() in f.name.lower()]
    if not files:
        raise CorralError(f"{ref}: no files match; see `corral files {ref}`")
    paths = hub.download(repo, files, revision=revision, dest=dest)
    imported = []
    for path in paths:
        if path.suffix in (".gguf", ".safetensors") or path.is_dir():
            result = app.library.import_path(path)
            if result.model:
                imported.append(result.model)
    if as_json:
        emit_json(imported)
    else:
        for model in imported:
            click.echo(f"Added {model.name} ({model.category}, {model.format}).")


COMMANDS = (chat_cmd, embed_cmd, rerank_cmd, imagine_cmd, speak_cmd, search_cmd, files_cmd, pull_cmd)
