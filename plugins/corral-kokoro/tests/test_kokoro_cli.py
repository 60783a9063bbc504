"""`corral import`, `show`, `settings` and `speak` on a tiny random-weight Kokoro model, in-process, over
the HTTP server, and as a real `corral` process that finds the plugin through its entry point.

Every test here runs with the hub client and spaCy's model download replaced by a tripwire: nothing may
be fetched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest
from corral.testing.cli import assert_clean_error, ok

VOICES = "af_heart, bf_emma, zf_xiaobei"


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch weights, voices or a spaCy pipeline fails the test."""
    import kokoro.model
    import kokoro.pipeline
    import spacy.cli

    def tripwire(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args} {kwargs}")

    for module in (kokoro.model, kokoro.pipeline):
        monkeypatch.setattr(module, "hf_hub_download", tripwire)
    monkeypatch.setattr(spacy.cli, "download", tripwire)


def read_wav(path: Path) -> tuple[int, int, int, bytes]:
    """(rate, channels, sample width, frames) of a WAV file, read back with the standard library."""
    with wave.open(str(path)) as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.readframes(wav.getnframes())


def assert_speech(path: Path) -> float:
    """A 24 kHz, mono, 16-bit WAV of plausible length (a short sentence: 0.2 s to 10 s), not silent;
    returns its duration in seconds."""
    rate, channels, width, frames = read_wav(path)
    assert (rate, channels, width) == (24000, 1, 2)
    samples = len(frames) // 2
    assert samples % 600 == 0  # whole Kokoro frames (25 ms each)
    assert 0.2 <= samples / rate <= 10.0, samples / rate
    assert frames.count(b"\x00") < len(frames) * 0.9  # not silence
    return samples / rate


@pytest.fixture
def tiny(run, kokoro_dir):
    ok(run("import", kokoro_dir, "--name", "tiny"))
    return "tiny"


def test_import_detects_kokoro_and_lists_voices(run, kokoro_dir):
    model = json.loads(ok(run("import", kokoro_dir, "--json")).stdout)["model"]
    assert (model["category"], model["format"], model["name"]) == ("tts", "kokoro", "Kokoro-tiny")
    assert model["facts"]["voices"] == ["af_heart", "bf_emma", "zf_xiaobei"]
    assert model["facts"]["architecture"] == "kokoro"
    shown = ok(run("show", "Kokoro-tiny")).stdout
    for voice in VOICES.split(", "):
        assert voice in shown
    plugins = json.loads(ok(run("plugins", "--json")).stdout)
    assert any("kokoro" in p["drivers"] for p in plugins)


@pytest.mark.parametrize("text, args", [
    ("Hello there. How are you today?", ["--lang", "a"]),
    ("Good morning, how do you do?", ["--lang", "b", "--voice", "bf_emma"]),
    ("你好，今天天气很好。", ["--lang", "z"]),
    ("你好，世界。", []),  # auto: CJK text is Mandarin
    ("Hello there.", ["--lang", "auto", "--voice", "bf_emma"]),  # auto: British voice, British English
], ids=["american", "british", "mandarin", "auto-mandarin", "auto-british"])
def test_speak_writes_a_24khz_wav(run, tiny, tmp_path, text, args):
    out = tmp_path / "speech.wav"
    result = ok(run("speak", tiny, text, *args, "--out", out))
    assert result.stdout.strip() == f"Wrote {out}"
    assert_speech(out)


def test_faster_speech_is_shorter(run, tiny, tmp_path):
    durations = []
    for speed in ("0.5", "2.0"):
        out = tmp_path / f"speed-{speed}.wav"
        ok(run("speak", tiny, "Hello there, friend.", "--speed", speed, "--out", out))
        durations.append(assert_speech(out))
    assert durations[0] > durations[1] * 2, durations


def test_missing_voice_names_the_voices(run, tiny, tmp_path):
    out = tmp_path / "x.wav"
    assert_clean_error(run("speak", tiny, "Hello.", "--voice", "am_nobody", "--out", out), "'am_nobody'", VOICES)
    assert not out.exists()


@pytest.mark.parametrize("speed", ["0.4", "2.5", "-1", "nan"])
def test_speed_outside_the_range_is_refused(run, tiny, tmp_path, speed):
    assert_clean_error(run("speak", tiny, "Hello.", "--speed", speed, "--out", tmp_path / "x.wav"),
                       "--speed", "0.5–2.0")


def test_language_choices_and_output_folder(run, tiny, tmp_path):
    result = run("speak", tiny, "Hello.", "--lang", "fr", "--out", tmp_path / "x.wav")
    assert result.exit_code != 0 and "'fr' is not one of 'a', 'b', 'z', 'auto'" in result.stderr
    assert_clean_error(run("speak", tiny, "Hello.", "--out", tmp_path / "no" / "x.wav"), "does not exist")


def test_settings_pick_the_voice_speed_and_english_phonemizer(run, tiny, tmp_path):
    ok(run("settings", tiny, "--set", "voice=bf_emma", "--set", "speed=2.0", "--set", "english_g2p=espeak"))
    fast = tmp_path / "fast.wav"
    ok(run("speak", tiny, "Hello there, friend.", "--out", fast))
    ok(run("settings", tiny, "--set", "english_g2p=lexicon", "--unset", "speed"))
    normal = tmp_path / "normal.wav"
    ok(run("speak", tiny, "Hello there, friend.", "--out", normal))
    assert assert_speech(normal) > assert_speech(fast)
    assert_clean_error(run("settings", tiny, "--set", "speed=3"), "speed", "at most 2.0")
    assert_clean_error(run("settings", tiny, "--set", "english_g2p=festival"), "english_g2p", "auto, tagger")
    ok(run("settings", tiny, "--set", "voice=nobody"))
    assert_clean_error(run("speak", tiny, "Hi.", "--out", tmp_path / "x.wav"), "'nobody'", VOICES)


def test_tagger_without_a_spacy_pipeline_says_what_to_install(run, tiny, tmp_path):
    ok(run("settings", tiny, "--set", "english_g2p=tagger", "--set", "spacy_model=en_core_web_missing"))
    assert_clean_error(run("speak", tiny, "Hi.", "--out", tmp_path / "x.wav"), "en_core_web_missing",
                       "pip install", "english_g2p=lexicon")


def test_cuda_without_a_gpu_is_refused(run, tiny, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU (test_cuda.py covers it)")
    ok(run("settings", tiny, "--set", "device=cuda"))
    assert_clean_error(run("speak", tiny, "Hi.", "--out", tmp_path / "x.wav"), "cuda", "device=cpu")
    # A device that is none of these is refused when it is saved, before any load.
    assert_clean_error(run("settings", tiny, "--set", "device=tpu"), "'tpu'", "cpu, cuda, cuda:N or mps")


def test_speech_over_http_and_the_cli_through_the_server(home, host, kokoro_dir, tmp_path):
    import io

    import httpx
    from click.testing import CliRunner

    from corral.testing import build_cli
    from corral.testing import open_library
    from corral.testing import Runtime
    from corral.testing import ServerThread

    library = open_library(home, host)
    library.import_path(kokoro_dir, name="tiny")
    runtime = Runtime(library)
    try:
        with ServerThread(runtime, state=True) as server:
            url = server.url + "/v1/audio/speech"
            answer = httpx.post(url, json={"model": "tiny", "input": "Hello there.", "voice": "bf_emma",
                                           "speed": 1.5, "response_format": "wav"}, timeout=120)
            assert answer.status_code == 200, answer.text
            with wave.open(io.BytesIO(answer.content)) as wav:
                assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24000, 1, 2)
                assert wav.getnframes() % 600 == 0 and wav.getnframes() > 0
            missing = httpx.post(url, json={"model": "tiny", "input": "Hi.", "voice": "xx"}, timeout=120)
            assert missing.status_code == 422 and VOICES in missing.json()["error"]["message"]
            too_fast = httpx.post(url, json={"model": "tiny", "input": "Hi.", "speed": 4.0}, timeout=120)
            assert too_fast.status_code == 422 and "0.5–2.0" in too_fast.json()["error"]["message"]
            # The CLI finds the running server (state file) and speaks through it.
            out = tmp_path / "served.wav"
            result = CliRunner().invoke(build_cli(), ["speak", "tiny", "你好。", "--out", str(out)])
            assert result.exit_code == 0, result.output + result.stderr
            assert_speech(out)
    finally:
        runtime.close()
        library.store.close()


def test_real_corral_process_finds_the_plugin(kokoro_dir, tmp_path):
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("CORRAL_LOAD_PLUGINS", None)

    def corral(*args):
        return subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300)

    imported = corral("import", kokoro_dir, "--name", "tiny")
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / "out.wav"
    spoken = corral("speak", "tiny", "Hello from the corral.", "--out", out)
    assert spoken.returncode == 0, spoken.stderr
    assert spoken.stdout.strip() == f"Wrote {out}" and spoken.stderr.strip() == ""
    assert_speech(out)
