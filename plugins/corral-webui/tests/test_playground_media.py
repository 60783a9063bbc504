"""The playground's rerank, image and speech forms with real backends on tiny random-weight models
(built by the backend plugins' own test helpers): the page shows what the server's API answers."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path

import pytest

from ui_helpers import build_library, open_ui, served

httpx = pytest.importorskip("httpx")

PLUGINS = Path(__file__).resolve().parents[2]


def sibling(dist: str, module: str):
    """A test helper module of another plugin of this repository (its tiny model builders)."""
    path = PLUGINS / dist / "tests" / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    spec = importlib.util.spec_from_file_location(f"webui_sibling_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def playground(page, server) -> None:
    open_ui(page, server, "#playground")
    page.wait_for_selector("#page-playground:not([hidden])")


def test_rerank_shows_the_ranked_list_the_api_answers(page, ui_home, offline):
    plugin = pytest.importorskip("corral_sentence_transformers")
    models = sibling("corral-sentence-transformers", "st_test_models")
    library = build_library(ui_home, plugin)
    library.import_path(models.write_trained_cross_encoder(ui_home / "ce", seed=3), name="tiny-rerank")
    documents = ["a cat sits on the mat", "stock prices fell sharply today", "a kitten rests on a rug",
                 "rain is expected over the weekend"]
    try:
        with served(library) as server:
            playground(page, server)
            page.select_option("#rerank-model", "tiny-rerank")
            page.locator("#rerank-form").get_by_label("Query", exact=True).fill("a cat on a rug")
            page.locator("#rerank-form").get_by_label("Documents, one per line", exact=True).fill("\n".join(documents))
            page.get_by_role("button", name="Rank").click()
            page.wait_for_selector("#ranking li", timeout=120_000)
            shown = [int(i) for i in page.locator("#ranking li").evaluate_all("items => items.map(i => i.dataset.index)")]
            answer = httpx.post(server.url + "/v1/rerank", timeout=120,
                                json={"model": "tiny-rerank", "query": "a cat on a rug", "documents": documents}).json()
            assert shown == [r["index"] for r in answer["results"]]
            scores = [r["relevance_score"] for r in answer["results"]]
            assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
            first = page.locator("#ranking li").first.inner_text()
            assert documents[shown[0]] in first and f"{scores[0]:.4f}" in first
    finally:
        library.store.close()


def test_image_generation_shows_the_image(page, ui_home, offline):
    plugin = pytest.importorskip("corral_diffusers")
    tiny = sibling("corral-diffusers", "tiny_pipelines")
    folder = ui_home / "tiny-sd15"
    tiny.tiny_sd15().save_pretrained(folder)
    library = build_library(ui_home, plugin)
    library.import_path(folder, name="tiny-sd")
    try:
        with served(library) as server:
            playground(page, server)
            page.select_option("#image-model", "tiny-sd")
            page.locator("#image-form").get_by_label("Prompt", exact=True).fill("a red square")
            page.locator("#image-form").get_by_label("Size", exact=True).fill("64x64")
            page.locator("#image-form").get_by_label("Steps", exact=True).fill("2")
            page.locator("#image-form").get_by_label("Seed", exact=True).fill("4")
            page.get_by_role("button", name="Generate").click()
            image = page.locator("#image-0")
            image.wait_for(timeout=180_000)
            page.wait_for_function("document.getElementById('image-0').complete")
            assert page.evaluate("[document.getElementById('image-0').naturalWidth, document.getElementById('image-0').naturalHeight]") == [64, 64]
            assert image.get_attribute("alt") == "Generated image 1: a red square"
            answer = httpx.post(server.url + "/v1/images/generations", timeout=180,
                                json={"model": "tiny-sd", "prompt": "a red square", "size": "64x64", "steps": 2,
                                      "seed": 4}).json()
            shown = image.get_attribute("src").split(",", 1)[1]
            assert base64.b64decode(shown) == base64.b64decode(answer["data"][0]["b64_json"])  # seeded: the same PNG
    finally:
        library.store.close()


def test_speech_plays_in_an_audio_player(page, ui_home, offline):
    plugin = pytest.importorskip("corral_kokoro")
    from corral_kokoro.testing import write_tiny_kokoro

    library = build_library(ui_home, plugin)
    library.import_path(write_tiny_kokoro(ui_home / "Kokoro-tiny"), name="tiny-voice")
    try:
        with served(library) as server:
            playground(page, server)
            page.select_option("#speech-model", "tiny-voice")
            page.locator("#speech-form").get_by_label("Text", exact=True).fill("Hello there, friend.")
            page.locator("#speech-form").get_by_label("Voice", exact=True).fill("af_heart")
            page.get_by_role("button", name="Speak").click()
            page.wait_for_selector("#speech-audio", timeout=180_000)
            page.wait_for_function("document.getElementById('speech-audio').readyState >= 1", timeout=30_000)
            seconds = page.evaluate("document.getElementById('speech-audio').duration")
            assert page.get_attribute("#speech-audio", "src").startswith("blob:")
            answer = httpx.post(server.url + "/v1/audio/speech", timeout=180,
                                json={"model": "tiny-voice", "input": "Hello there, friend.", "voice": "af_heart"})
            rate = int(answer.headers["X-Sample-Rate"])
            frames = (len(answer.content) - 44) // 2  # 16-bit mono PCM after the 44-byte WAV header
            assert seconds == pytest.approx(frames / rate, abs=0.05)
            assert f"{rate} Hz" in page.inner_text("#speech-result")
    finally:
        library.store.close()
