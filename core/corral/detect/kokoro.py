"""Kokoro text-to-speech layouts: config.json (istftnet + plbert), one .pth checkpoint, voices/*.pt.

The checkpoint and every voice are pickles, so each is opcode-scanned like any other PyTorch file and an
unsafe one is refused.
"""

from __future__ import annotations

from pathlib import Path

from corral.errors import DetectionError
from corral.records import Category, Detection, Facts, Format, Kind

#: Kokoro's voice names start with a language code (its KPipeline ``lang_code``).
LANGUAGES = {
    "a": "American English", "b": "British English", "e": "Spanish", "f": "French", "h": "Hindi",
    "i": "Italian", "j": "Japanese", "p": "Brazilian Portuguese", "z": "Mandarin Chinese",
}
MAX_VOICES = 1024


def kokoro_layout(folder: Path) -> tuple[dict, Path, list[Path]] | None:
    """(config, checkpoint, voice files) when ``folder`` is a Kokoro layout, else None.

    :raises DetectionError: config.json is not valid JSON.
    """
    from corral.detect.bounded import read_json

    folder = Path(folder)
    config_path = folder / "config.json"
    voices_dir = folder / "voices"
    if not config_path.is_file() or not voices_dir.is_dir():
        return None
    config = read_json(config_path)
    if not (isinstance(config, dict) and "istftnet" in config and "plbert" in config
            and ("n_token" in config or "vocab" in config)):
        return None
    checkpoints = sorted(p for p in folder.glob("*.pth") if p.is_file())
    if len(checkpoints) > 1:
        # Kokoro-82M ships kokoro-v1_0.pth; prefer a name that says kokoro over other stray .pth files.
        checkpoints = [p for p in checkpoints if "kokoro" in p.name.lower()] or checkpoints
    voices = sorted(p for p in voices_dir.glob("*.pt") if p.is_file())[:MAX_VOICES]
    if not checkpoints or not voices:
        return None
    return config, checkpoints[0], voices


def detect_kokoro_dir(folder: Path, *, allow_unsafe: bool = False) -> Detection:
    """Detect a Kokoro layout folder (see :func:`kokoro_layout`).

    :raises UnsafeFile: the checkpoint or a voice imports non-allow-listed globals (unless allow_unsafe).
    :raises DetectionError: ``folder`` is not a Kokoro layout, or a pickle in it is unreadable.
    """
    from corral.detect.pickle_scan import require_safe, scan_pickle

    folder = Path(folder)
    layout = kokoro_layout(folder)
    if layout is None:
        raise DetectionError(f"{folder}: not a Kokoro layout (config.json with istftnet and plbert, "
                             "a .pth checkpoint and voices/*.pt)")
    config, checkpoint, voices = layout
    unsafe = None
    for pickle_file in [checkpoint, *voices]:
        scan = scan_pickle(pickle_file)
        require_safe(scan, allow_unsafe)
        unsafe = unsafe or (f"{pickle_file.name} {scan.unsafe}" if scan.unsafe else None)
    names = tuple(v.stem for v in voices)
    languages = sorted({LANGUAGES.get(n[:1], n[:1]) for n in names})
    n_token = config.get("n_token")
    hidden = config.get("hidden_dim")
    facts = Facts(
        architecture="kokoro",
        vocab_size=n_token if type(n_token) is int else None,
        hidden_size=hidden if type(hidden) is int else None,
        voices=names,
        extra={"languages": languages, "style_dim": config.get("style_dim") if type(config.get("style_dim")) is int
               else None},
    )
    reasons = [
        "config.json with istftnet and plbert sections (a Kokoro TTS model)",
        f"checkpoint {checkpoint.name} (opcodes scanned), {len(voices)} voices in voices/",
    ]
    if unsafe:
        reasons.append(f"unsafe: {unsafe}; recorded because --allow-unsafe was given")
    paths = (checkpoint, folder / "config.json", *voices)
    return Detection(
        path=folder, kind=Kind.MODEL, format=Format.KOKORO, category=Category.TTS, confidence=0.95,
        reasons=tuple(reasons), facts=facts, paths=paths, size=sum(p.stat().st_size for p in paths),
        unsafe=unsafe,
    )


def detect_kokoro_file(path: Path, *, allow_unsafe: bool = False) -> Detection | None:
    """The Kokoro layout's detection when ``path`` is the .pth checkpoint of one, else None.

    :raises UnsafeFile: as :func:`detect_kokoro_dir`.
    """
    path = Path(path)
    if path.suffix.lower() != ".pth":
        return None
    try:
        layout = kokoro_layout(path.parent)
    except DetectionError:
        return None  # a broken config.json beside an ordinary .pth: not Kokoro's business
    if layout is None or layout[1].resolve() != path.resolve():
        return None
    return detect_kokoro_dir(path.parent, allow_unsafe=allow_unsafe)
