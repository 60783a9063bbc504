"""A third-party plugin that adds a kind of model the core does not know: ``transcription``, with the task
``transcribe``, stored in its own format (``tally``: a small JSON file naming the words it hears).

It uses only ``corral.api`` and the registration hooks: a category, a format and its detector, a
driver, a CLI command and an HTTP route. tests/test_open_categories.py drives it end to end. Its
"transcriber" reads a real WAV file with the standard library and names what it holds, so the answer
depends on the audio sent.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import click

from corral import hookimpl
from corral.api import (
    App,
    Category,
    CategorySpec,
    Detection,
    DetectionError,
    Driver,
    Facts,
    Format,
    FormatSpec,
    InvalidRequest,
    Kind,
    LoadedModel,
    emit_json,
    http_endpoint,
    pass_app,
    service_of,
)
from corral.testing import open_model

TRANSCRIPTION = Category("transcription")
TALLY = Format("tally")
MAGIC = b'{"tally":'


class TallyHandle(LoadedModel):
    def transcribe(self, audio: bytes) -> str:
        """Names the WAV's length in the model's words (one word per tenth of a second, cycled)."""
        try:
            with wave.open(io.BytesIO(audio)) as wav:
                frames, rate = wav.getnframes(), wav.getframerate()
        except (wave.Error, EOFError) as exc:
            raise InvalidRequest(f"{self.model.name}: the audio is not a WAV file ({exc})") from None
        words = json.loads(Path(self.model.path).read_text())["tally"]
        count = max(1, round(10 * frames / rate))
        return " ".join(words[i % len(words)] for i in range(count))

    def memory(self) -> dict[str, int]:
        return {"ram": 4096, "vram": 0}


class TallyDriver(Driver):
    name = "tally"
    distribution = "corral-tally"
    categories = frozenset({TRANSCRIPTION})
    formats = frozenset({TALLY})

    def load(self, model, settings, loras=()):
        return TallyHandle(model, settings, loras)


@hookimpl
def register_categories(register):
    register(CategorySpec("transcription", {"transcribe"}, description="speech to text"))


@hookimpl
def register_formats(register):
    register(FormatSpec("tally", "a word list that transcribes by counting"))


@hookimpl
def register_drivers(register):
    register(TallyDriver)


@hookimpl
def detect_model(path: Path):
    if not path.is_file():
        return None
    with path.open("rb") as f:
        head = f.read(len(MAGIC))
    if head != MAGIC:
        return None
    try:
        words = json.loads(path.read_bytes()[:65536])["tally"]
    except (ValueError, KeyError):
        raise DetectionError(f"{path}: a tally file that is not valid JSON with a 'tally' list") from None
    return Detection(
        path=path, kind=Kind.MODEL, format=TALLY, category=TRANSCRIPTION, reasons=("starts with {\"tally\":",),
        facts=Facts(architecture="tally", parameters=len(words)), paths=(path,), size=path.stat().st_size,
    )


@hookimpl
def register_commands(cli):
    @cli.command("transcribe")
    @click.argument("model")
    @click.argument("audio", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True)
    @pass_app
    def transcribe_cmd(app: App, model: str, audio: Path, as_json: bool) -> None:
        """Write what MODEL hears in the WAV file AUDIO."""
        with open_model(app.library, model) as handle:
            text = handle.transcribe(audio.read_bytes())
        emit_json({"text": text}) if as_json else click.echo(text)


@hookimpl
def register_routes(register):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    @http_endpoint
    async def transcriptions(request):
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise InvalidRequest("field 'model': name the transcription model")
        audio = base64.b64decode(body.get("audio", ""))
        entry, text = await service_of(request).run(body["model"], "transcribe", lambda e: e.handle.transcribe(audio))
        return JSONResponse({"model": entry.model.name, "text": text})

    register(Route("/tally/transcriptions", transcriptions, methods=["POST"]))
