"""Categories, formats and routes are open: a plugin adds a kind of model (tests/transcription_plugin.py:
``transcription`` with a ``transcribe`` task in a ``tally`` format) and it works like a built-in one —
`corral ls --category`, detection and import, the load rules, its CLI command and its HTTP route —
with no core edit beyond the registries."""

from __future__ import annotations

import io
import json
import struct
import wave

import httpx
import pytest

import plugins_for_tests as tp
import transcription_plugin as tally
from corral import hookimpl
from corral.api import CategorySpec, Found, Provenance, StoreLayout
from corral.errors import Unsupported
from corral.runtime import Runtime
from corral.server.serve import ServerThread
from corral.testing.hosts import installed_host
from factories import write_tiny_gguf

WAIT = 30


@pytest.fixture
def host():  # replaces conftest's: the core's built-ins, the tally plugin and a chat driver
    with installed_host(tally, tp.echo_plugin) as fresh:
        yield fresh


def write_tally(path, words):
    path.write_text(json.dumps({"tally": words}))
    return path


def wav(seconds: float, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack("<h", 0) * int(seconds * rate))
    return out.getvalue()


@pytest.fixture
def models(library, tmp_path):
    """A chat model ``c`` (echo driver) and two transcription models ``t1`` and ``t2``."""
    library.import_path(write_tiny_gguf(tmp_path / "c.gguf"), name="c")
    library.import_path(write_tally(tmp_path / "t1.tally", ["one", "two"]), name="t1")
    library.import_path(write_tally(tmp_path / "t2.tally", ["la"]), name="t2")
    return library


def test_the_category_is_detected_listed_filtered_and_has_its_command(run, tmp_path):
    shown = run("plugins").stdout
    assert "categories: transcription" in shown and "formats: tally" in shown
    assert "categories: chat, multimodal, text-generation, embedding, rerank, image, tts" in shown  # corral.builtin
    imported = json.loads(run("import", write_tally(tmp_path / "t1.tally", ["a", "b", "c"]), "--json").stdout)
    assert (imported["model"]["category"], imported["model"]["format"]) == ("transcription", "tally")
    run("import", write_tiny_gguf(tmp_path / "c.gguf"))
    listed = json.loads(run("ls", "--category", "transcription", "--json").stdout)
    assert [m["name"] for m in listed] == ["t1"]
    assert {m["name"] for m in json.loads(run("ls", "--json").stdout)} == {"t1", "c"}
    typo = run("ls", "--category", "transcriptoin")
    assert typo.exit_code == 2 and "'transcriptoin' is not a category" in typo.stderr and "transcription" in typo.stderr
    audio = tmp_path / "hello.wav"
    audio.write_bytes(wav(0.5))
    said = run("transcribe", "t1", audio)
    assert said.exit_code == 0 and said.stdout.strip() == "a b c a b"


def test_load_rules_read_the_declared_group(models):
    rt = Runtime(models, drain_timeout=WAIT)
    try:
        rt.load("c")
        rt.load("t1")
        assert {i.name for i in rt.ps()} == {"c", "t1"}  # its own group: the chat model stays
        assert rt.call("t1", "transcribe", wav(0.3)) == "one two one"
        rt.load("t2")  # the same group: replaces t1
        assert [(i.name, i.category) for i in rt.ps()] == [("c", "chat"), ("t2", "transcription")]
        with pytest.raises(Unsupported, match="t2 is a transcription model; it can transcribe, not chat"):
            rt.call("t2", "chat", [{"role": "user", "content": "hi"}])
        with pytest.raises(Unsupported, match="it can chat, complete, not transcribe"):
            rt.call("c", "transcribe", wav(0.1))
        assert [m.name for m in rt.unload_category("transcription")] == ["t2"]
    finally:
        rt.close()


def test_the_plugin_route_runs_through_the_runtime(models):
    import base64

    rt = Runtime(models, drain_timeout=WAIT)
    with ServerThread(rt, api_key="k") as srv, httpx.Client(base_url=srv.url, timeout=WAIT) as http:
        key = {"Authorization": "Bearer k"}
        body = {"model": "t2", "audio": base64.b64encode(wav(0.2)).decode()}
        assert http.post("/tally/transcriptions", json=body).status_code == 401  # the key rules apply
        answer = http.post("/tally/transcriptions", json=body, headers=key)
        assert answer.json() == {"model": "t2", "text": "la la"}
        loaded = http.get("/corral/ps", headers=key).json()["models"]
        assert [(m["name"], m["category"]) for m in loaded] == [("t2", "transcription")]
        missing = http.post("/tally/transcriptions", json={**body, "model": "nope"}, headers=key)
        assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
        wrong = http.post("/tally/transcriptions", json={**body, "model": "c"}, headers=key)
        assert wrong.status_code == 400 and "it can chat, complete, not transcribe" in wrong.json()["error"]["message"]
        unloaded = http.post("/corral/unload", json={"category": "transcription"}, headers=key).json()
        assert unloaded == {"unloaded": ["t2"]}
        unknown = http.post("/corral/unload", json={"category": "ocr"}, headers=key)
        assert unknown.status_code == 400 and "transcription" in unknown.json()["error"]["message"]


class squatter:  # noqa: N801 - registers a name the core already has, and a broken observer
    @staticmethod
    @hookimpl
    def register_categories(register):
        register(CategorySpec("chat", {"shout"}))

    @staticmethod
    @hookimpl
    def model_loaded(model, loras, memory):
        raise RuntimeError("observer bug")


class broken_routes:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_routes(register):
        register("/not-a-route")


def test_a_name_is_registered_once_and_a_broken_observer_never_fails_a_load(home, tmp_path):
    from corral.library import open_library

    with installed_host(tally, tp.echo_plugin, squatter) as fresh:
        assert fresh.tasks("chat") == {"chat", "complete"}
        problems = fresh.problems[squatter.__name__]
        assert problems == ["category 'chat' is already registered by corral.builtin; this one is ignored"]
        lib = open_library(home, fresh)
        lib.import_path(write_tiny_gguf(tmp_path / "c.gguf"), name="c")
        rt = Runtime(lib, drain_timeout=WAIT)
        try:
            assert rt.load("c").model.name == "c"
        finally:
            rt.close()
            lib.store.close()
        assert "model_loaded raised RuntimeError: observer bug" in fresh.problems[squatter.__name__]
        assert squatter.__name__ not in fresh.failures


def test_a_plugin_registering_a_bad_route_is_dropped_and_the_server_starts(home, tmp_path):
    from corral.library import open_library

    with installed_host(tally, broken_routes) as fresh:
        lib = open_library(home, fresh)
        rt = Runtime(lib, drain_timeout=WAIT)
        with ServerThread(rt) as srv:
            assert httpx.get(srv.url + "/corral/health", timeout=WAIT).status_code == 200
            assert httpx.post(srv.url + "/tally/transcriptions", json={}, timeout=WAIT).status_code == 400
        error = fresh.failures[broken_routes.__name__].error
        assert error == "register_routes raised TypeError: plugin 'broken_routes' registered '/not-a-route', " \
                        "which is not a Starlette route"
        lib.store.close()


class JanLayout(StoreLayout):
    """A store of ``<model>/model.json`` files naming their weights file and display name."""

    name, label = "jan", "Jan models"

    @classmethod
    def default_roots(cls):
        return []

    @classmethod
    def find(cls, root):
        for card in sorted(root.glob("*/model.json")):
            info = json.loads(card.read_text())
            weights = card.parent / info["file"]
            if not weights.is_file():
                yield Found(weights, info["name"], problem=f"{card} names {info['file']}, which is missing")
                continue
            yield Found(weights, info["name"], Provenance(hub="jan", repo=info["name"]))


class jan_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_store_layouts(register):
        register(JanLayout)


def test_a_plugin_store_layout_is_scanned_like_the_built_in_ones(home, tmp_path):
    from click.testing import CliRunner

    from corral.cli import build_cli

    store = tmp_path / "jan"
    (store / "gemma-tiny").mkdir(parents=True)
    write_tiny_gguf(store / "gemma-tiny" / "weights.gguf")
    (store / "gemma-tiny" / "model.json").write_text(json.dumps({"name": "jan/gemma-tiny", "file": "weights.gguf"}))
    (store / "broken").mkdir()
    (store / "broken" / "model.json").write_text(json.dumps({"name": "jan/broken", "file": "gone.gguf"}))
    with installed_host(tp.echo_plugin, jan_plugin) as fresh:
        assert fresh.store_layout_names() == ["hf-cache", "ollama", "lmstudio", "jan"]
        cli = build_cli()
        scanned = CliRunner().invoke(cli, ["scan", str(store), "--layout", "jan", "--json"])
        entries = {e["name"]: e["status"] for e in json.loads(scanned.stdout)["entries"]}
        assert entries == {"jan/gemma-tiny": "added", "jan/broken": "error"}
        again = CliRunner().invoke(cli, ["scan", str(store), "--layout", "jan", "--json"])
        assert {e["status"] for e in json.loads(again.stdout)["entries"]} == {"exists", "error"}
        shown = json.loads(CliRunner().invoke(cli, ["show", "jan/gemma-tiny", "--json"]).stdout)
        assert shown["model"]["provenance"]["hub"] == "jan"
        unknown = CliRunner().invoke(cli, ["scan", str(store), "--layout", "gpt4all"])
        assert unknown.exit_code != 0 and "unknown store layout 'gpt4all'; known: hf-cache, ollama, lmstudio, jan" \
            in unknown.stderr
        nowhere = CliRunner().invoke(cli, ["scan", "--layout", "jan"])
        assert nowhere.exit_code != 0 and "no Jan models folder" in nowhere.stderr
