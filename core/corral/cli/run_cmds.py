"""Commands that run a model through its driver, on the running server or in this process (chat, run,
embed, rerank, imagine, speak).

Each answers with the plugin to install when no installed plugin can do the job.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from corral.cli.base import MODEL_NAME, App, emit_json, human_size, json_option, pass_app, read_lines, table
from corral.errors import CorralError
from corral.records import Category, Format
from corral.server.remote import use_model

lora_option = click.option("--lora", "loras", multiple=True, metavar="NAME[=WEIGHT]", help="LoRA to apply.")


def chat_options(command):
    """The options ``chat`` takes, which ``run`` passes on to it."""
    options = (
        lora_option,
        click.option("--n-ctx", type=int, help="Context length for this run."),
        click.option("--temperature", type=float),
        click.option("--max-tokens", type=int),
        click.option("--seed", type=int),
        click.option("--json-schema", "schema_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Answer as JSON matching the JSON schema in FILE (decoding is constrained to it)."),
        click.option("--tools", "tools_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="Offer the functions in FILE (OpenAI tools JSON) and print the calls the model makes."),
        click.option("--tool-choice", default=None, metavar="auto|required|none|NAME",
                     help="With --tools: let the model choose (auto), force a call (required) or call NAME."),
        click.option("--system", help="System prompt for this chat (the model's saved one otherwise)."),
        click.option("--verbose", is_flag=True,
                     help="After each answer, print its timing (first token, tokens/s) to stderr."),
        click.option("--force", is_flag=True, help="Load even when the memory estimate does not fit."),
        json_option,
    )
    for option in reversed(options):
        command = option(command)
    return command


@click.command("chat")
@click.argument("model", type=MODEL_NAME)
@click.argument("prompt", required=False)
@chat_options
@pass_app
def chat_cmd(app: App, model, prompt, loras, n_ctx, temperature, max_tokens, seed, schema_file, tools_file,
             tool_choice, system, verbose, force, as_json) -> None:
    """Chat with MODEL: one answer to PROMPT, or an interactive session without one.

    Without PROMPT and with stdin not a terminal, the prompt is read from stdin and only the answer is
    printed. The interactive session has line editing and history, slash commands (/help lists them),
    multi-line messages between \"\"\" lines; Ctrl-C stops an answer and keeps the session.
    With --json-schema or --tools, PROMPT is answered once and the structured answer (the JSON, or the
    tool calls as a JSON list of {name, arguments}) is printed."""
    from corral.cli.chat_session import ChatSession, json_answer, open_history, stream_answer

    overrides = {"n_ctx": n_ctx} if n_ctx is not None else {}
    params = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens), ("seed", seed)) if v is not None}
    structured = _structured(schema_file, tools_file, tool_choice)
    if prompt is None and not sys.stdin.isatty():
        prompt = sys.stdin.read().strip()
        if not prompt:
            raise click.UsageError("no prompt: stdin was empty")
    if structured and prompt is None:
        raise click.UsageError("--json-schema and --tools answer one PROMPT; give it")
    head = [{"role": "system", "content": system}] if system else []
    with use_model(app, model, loras=loras, overrides=overrides, force=force) as handle:
        if structured:
            result = handle.chat(head + [{"role": "user", "content": prompt}], **params, **structured)
            if getattr(result, "tool_calls", ()):
                calls = [{"name": c.name, "arguments": json.loads(c.arguments)} for c in result.tool_calls]
                click.echo(json.dumps(calls, indent=2, ensure_ascii=False))
            else:
                click.echo(result.text)
            return
        if prompt is not None:
            write = (lambda _piece: None) if as_json else (lambda piece: click.echo(piece, nl=False))
            turn = stream_answer(handle, head + [{"role": "user", "content": prompt}], params, write)
            if as_json:
                click.echo(json_answer(turn, model))
            else:
                click.echo()
            if verbose:
                click.echo(turn.summary(), err=True)
            return
        from corral.home import corral_home

        save_history = open_history(corral_home())
        session = ChatSession(handle, model, params=params, system=system, verbose=verbose,
                              save=lambda name, sys_prompt, kept: save_variant(app, model, name, sys_prompt, kept))
        try:
            session.run()
        finally:
            save_history()


@click.command("run")
@click.argument("model", type=MODEL_NAME)
@click.argument("prompt", required=False)
@click.option("--pull", "pull_first", is_flag=True,
              help="MODEL is not in the library: pull it first without asking (a catalog id or a hub repo).")
@click.option("--quant", help="The quantization to pull (default: the best one that fits in free memory).")
@click.option("--source", metavar="HUB", help="Hub to pull from (default: the catalog's, or huggingface).")
@chat_options
@pass_app
@click.pass_context
def run_cmd(ctx: click.Context, app: App, model, prompt, pull_first, quant, source, **chat) -> None:
    """Chat with MODEL, pulling it first when the library lacks it, like `ollama run`.

    MODEL is a library model (then this is `corral chat`), a catalog id (`corral catalog ls`) or a hub
    repository (org/name[:rev]). A model not in the library is offered for pulling on a terminal; without
    one, --pull pulls it. The pulled model keeps the name MODEL, so the same command finds it next time.
    """
    from corral.errors import NotFound

    try:
        name = app.library.store.get_model(model).name
    except NotFound as missing:
        name = _pull_for_run(ctx, app, model, missing, pull_first=pull_first, quant=quant, source=source,
                             force=chat["force"])
    ctx.invoke(chat_cmd, model=name, prompt=prompt, **chat)


def _pull_for_run(ctx: click.Context, app: App, ref: str, missing: CorralError, *, pull_first: bool,
                  quant: str | None, source: str | None, force: bool) -> str:
    """Pull what ``corral run REF`` needs (asking first on a terminal); the name of the model to chat with."""
    from corral.catalog import load_catalog
    from corral.cli.hub_cmds import pull_model
    from corral.errors import ConfirmationNeeded
    from corral.pull import describe

    entry = next((e for e in load_catalog(app.host).select() if e.id == ref.lower()), None)
    if entry is None and "/" not in ref:
        raise missing  # neither a catalog id nor a repository: the library's error, with its suggestions
    if entry is not None:
        repo, quant, source = entry.repo, quant or _quant_that_fits(entry, force), source or entry.source
        what = f"{entry.name} ({repo}{f', {quant}' if quant else ''}, from {source})"
        mmproj = entry.category == Category.MULTIMODAL
    else:
        repo, what, mmproj = ref, f"{ref}{f' ({quant})' if quant else ''}", True
    if not pull_first:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise ConfirmationNeeded(f"{ref} is not in the library; pull {what} and chat: corral run {ref} --pull")
        click.confirm(f"{ref} is not in the library. Pull {what}?", default=True, abort=True, err=True)
    from corral.cli.server_pull import running_server

    # As `corral pull`: a server running for this library downloads it as one of its jobs.
    result = pull_model(ctx, app, repo, source=source, quant=quant, mmproj=mmproj, name=ref,
                        server=running_server())
    click.echo(describe(result), err=True)
    got = [*result.models, *result.existing]
    if not got:
        raise NotFound(f"pulling {repo} brought no model to chat with; see `corral files {repo}`")
    return got[0].name


def _quant_that_fits(entry, force: bool) -> str | None:
    """The catalog entry's best quantization that fits in free memory (None: not a quantized model)."""
    from corral.catalog.estimate import estimate_entry
    from corral.catalog.recommend import recommend
    from corral.errors import InsufficientMemory
    from corral.estimate import free_memory

    if not entry.quantizations or entry.format != Format.GGUF:
        return None
    ram, vram = free_memory()
    picks = recommend([entry], ram + (vram or 0), limit=1)
    if picks:
        return picks[0].quant.name
    smallest = min(entry.quantizations, key=lambda q: estimate_entry(entry, q, None).total_bytes)
    if force:
        return smallest.name
    need = estimate_entry(entry, smallest, None).total_bytes
    raise InsufficientMemory(f"{entry.id}: even {smallest.name} needs about {human_size(need)}, more than the "
                             f"{human_size(ram + (vram or 0))} free; pull it anyway with --force")


def save_variant(app: App, model: str, name: str, system: str | None, params: dict) -> str:
    """``/save NAME``: a second record over ``model``'s files with the session's system prompt and
    sampling parameters as its saved defaults (what ``corral cp MODEL NAME`` and ``corral settings`` do)."""
    kept = {k: v for k, v in params.items() if k in SAVED_PARAMETERS}
    if system:
        kept["system_prompt"] = system
    copy = app.library.copy(model, name, settings=kept)
    return f"Saved {copy.name} (a copy of {model} with this session's system prompt and parameters)."


#: The session parameters ``/save`` keeps as the copy's saved sampling defaults.
SAVED_PARAMETERS = ("temperature", "top_p", "top_k", "repeat_penalty", "max_tokens")


def _read_json_file(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorralError(f"{path}: cannot read {what} from it ({exc})") from None


def _structured(schema_file, tools_file, tool_choice) -> dict:
    """The chat parameters of --json-schema / --tools / --tool-choice."""
    out: dict = {}
    if schema_file is not None:
        schema = _read_json_file(schema_file, "a JSON schema")
        if not isinstance(schema, dict):
            raise CorralError(f"{schema_file}: a JSON schema is a JSON object")
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": Path(schema_file).stem or "answer", "schema": schema,
                                                  "strict": True}}
    if tools_file is not None:
        tools = _read_json_file(tools_file, "tools")
        if isinstance(tools, dict):
            tools = tools.get("tools", [tools])
        out["tools"] = [t if isinstance(t, dict) and "function" in t else {"type": "function", "function": t}
                        for t in tools] if isinstance(tools, list) else tools
        if tool_choice in (None, "auto", "required", "none"):
            if tool_choice:
                out["tool_choice"] = tool_choice
        else:
            out["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
    elif tool_choice is not None:
        raise click.UsageError("--tool-choice needs --tools")
    return out


def _texts_to_embed(texts, text_file) -> list[str]:
    """Texts from the arguments, then --file (one per line), or piped stdin when neither is given."""
    texts = read_lines(texts)
    if text_file is not None:
        try:
            with click.open_file(str(text_file), encoding="utf-8") as lines:
                texts += [line.rstrip("\r\n") for line in lines if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise CorralError(f"{text_file}: cannot read texts from it ({exc})") from None
    elif not texts and not sys.stdin.isatty():
        texts = read_lines(["-"])
    if not texts:
        where = f"{text_file} holds no texts" if text_file is not None else "no texts given"
        raise CorralError(f"{where}: pass TEXT arguments, --file FILE (one text per line), or pipe lines on stdin")
    return texts


@click.command("embed")
@click.argument("model", type=MODEL_NAME)
@click.argument("texts", nargs=-1)
@click.option("--file", "text_file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Read texts from FILE, one per line (- for stdin).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Texts per forward pass (default: the model's setting).")
@click.option("--normalize/--no-normalize", default=None, help="Unit-length vectors (default: the model's setting).")
@json_option
@pass_app
def embed_cmd(app: App, model, texts, text_file, batch_size, normalize, as_json) -> None:
    """Print one vector per TEXT as JSON; texts also come from --file or stdin, one per line."""
    texts = _texts_to_embed(texts, text_file)
    params = {k: v for k, v in (("batch_size", batch_size), ("normalize", normalize)) if v is not None}
    with use_model(app, model) as handle:
        vectors = handle.embed(texts, **params)
    if as_json:
        emit_json(vectors)
    else:  # still one JSON document, one vector per line
        click.echo("[" + ",\n ".join(json.dumps([float(x) for x in v]) for v in vectors) + "]")


@click.command("rerank")
@click.argument("model", type=MODEL_NAME)
@click.argument("query")
@click.argument("documents", nargs=-1, required=True)
@click.option("--top-k", type=int, help="Only the best K documents.")
@json_option
@pass_app
def rerank_cmd(app: App, model, query, documents, top_k, as_json) -> None:
    """Score DOCUMENTS against QUERY and print them best first."""
    with use_model(app, model) as handle:
        ranked = handle.rerank(query, list(documents), top_n=top_k)
    if as_json:
        emit_json([{"index": i, "score": float(s), "document": documents[i]} for i, s in ranked])
        return
    table([(f"{s:.4f}", i, documents[i]) for i, s in ranked], ["SCORE", "INDEX", "DOCUMENT"])


@click.command("imagine")
@click.argument("model", type=MODEL_NAME)
@click.argument("prompt")
@lora_option
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Input image (image-to-image, or image-to-video).")
@click.option("--strength", type=click.FloatRange(0.0, 1.0), help="How far to move from --image (0..1).")
@click.option("--steps", type=click.IntRange(min=1), help="Denoising steps (default: the model's own).")
@click.option("--guidance", type=float, help="Guidance scale (default: the model's own).")
@click.option("--negative-prompt", help="What to steer away from (models that take one).")
@click.option("--size", metavar="WxH")
@click.option("--frames", type=click.IntRange(min=1), help="Video frames (video models).")
@click.option("--seed", type=int)
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output PNG; for video, a folder of numbered PNG frames or an .mp4 file.")
@click.option("--force", is_flag=True, help="Load even when the memory estimate does not fit.")
@pass_app
def imagine_cmd(app: App, model, prompt, loras, image, strength, steps, guidance, negative_prompt, size, frames, seed,
                out, force) -> None:
    """Generate an image (or a video) from PROMPT with MODEL into --out."""
    params = {"image": image, "strength": strength, "steps": steps, "guidance": guidance, "seed": seed,
              "negative_prompt": negative_prompt, "num_frames": frames}
    if size:
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"{size!r} is not WxH, e.g. 512x512", param_hint="--size") from None
        params.update(width=width, height=height)
    params = {k: v for k, v in params.items() if v is not None}
    with use_model(app, model, loras=loras, force=force) as handle:
        images = handle.imagine(prompt, **params)
    if not images:
        raise CorralError(f"{model} returned no image for this prompt")
    if len(images) == 1 and out.suffix.lower() != ".mp4" and not out.is_dir():
        images[0].save(out)
        click.echo(f"Wrote {out}")
        return
    write_video(out, images)
    click.echo(f"Wrote {len(images)} frames to {out}")


def write_video(out: Path, frames) -> None:
    """Video frames as an .mp4 (through imageio) or as numbered PNGs in a folder."""
    if out.suffix.lower() == ".mp4":
        try:
            import imageio.v2 as imageio
            import numpy as np
        except ImportError:
            raise CorralError(f"{out}: writing .mp4 needs imageio: pip install imageio imageio-ffmpeg "
                              "(or give --out a folder for PNG frames)") from None
        try:
            with imageio.get_writer(out, fps=16) as writer:
                for frame in frames:
                    writer.append_data(np.asarray(_pil(frame).convert("RGB")))
        except (OSError, RuntimeError, ValueError) as exc:
            raise CorralError(f"{out}: cannot write the video ({exc}); pip install imageio-ffmpeg, "
                              "or give --out a folder for PNG frames") from None
        return
    if out.suffix and not out.is_dir():
        raise CorralError(f"{out}: the model made {len(frames)} frames; give --out a folder (PNG frames) "
                          "or an .mp4 file")
    out.mkdir(parents=True, exist_ok=True)
    for n, frame in enumerate(frames):
        frame.save(out / f"frame_{n:04d}.png")


def _pil(frame):
    """A PIL image of a frame (a server answer holds PNG bytes)."""
    if hasattr(frame, "png"):
        import io

        from PIL import Image

        return Image.open(io.BytesIO(frame.png))
    return frame


@click.command("speak")
@click.argument("model", type=MODEL_NAME)
@click.argument("text")
@click.option("--voice", help="Voice name (several joined by commas blend them); default: the model's.")
@click.option("--speed", type=float, help="0.5 (half as fast) to 2.0 (twice as fast); default 1.0.")
@click.option("--lang", type=click.Choice(["a", "b", "z", "auto"]),
              help="a American English, b British English, z Mandarin; auto (default) detects it from TEXT.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output .wav file.")
@click.option("--force", is_flag=True, help="Load even when the memory estimate does not fit.")
@pass_app
def speak_cmd(app: App, model, text, voice, speed, lang, out, force) -> None:
    """Synthesise TEXT with MODEL into a 16-bit mono WAV file."""
    from corral.errors import InvalidSetting

    # Checked before the model loads; NaN fails the comparison too.
    if speed is not None and not 0.5 <= speed <= 2.0:
        raise InvalidSetting(f"--speed {speed} is outside 0.5–2.0 (1.0 is normal, 0.5 half as fast, "
                             "2.0 twice as fast)")
    if not Path(out).parent.is_dir():
        raise CorralError(f"{out}: its folder {Path(out).parent} does not exist; create it or pick another --out")
    params = {k: v for k, v in (("voice", voice), ("speed", speed), ("lang", lang)) if v is not None}
    with use_model(app, model, force=force) as handle:
        samples, rate = handle.speak(text, **params)
    try:
        write_wav(out, samples, rate)
    except OSError as exc:
        raise CorralError(f"{out}: cannot write the WAV file ({exc.strerror or exc})") from None
    click.echo(f"Wrote {out}")


def write_wav(path: Path, samples, rate: int) -> None:
    """16-bit mono WAV from float samples in [-1, 1]."""
    from corral.server.media import wav_bytes

    Path(path).write_bytes(wav_bytes(samples, rate))


COMMANDS = (chat_cmd, run_cmd, embed_cmd, rerank_cmd, imagine_cmd, speak_cmd)
