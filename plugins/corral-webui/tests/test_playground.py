"""Load, chat and unload from the browser with the real Gemma 3 270M (llama.cpp), the load rules'
message shown first; embeddings of the real MiniLM as a similarity matrix."""

from __future__ import annotations

import pytest

from corral.testing import write_tiny_gguf
from ui_helpers import GEMMA_SETTINGS, build_library, open_ui, served


@pytest.fixture
def gemma_ui(ui_home, gemma_path):
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    library = build_library(ui_home, corral_llamacpp)
    library.import_path(gemma_path, name="gemma")
    library.update_settings("gemma", GEMMA_SETTINGS)
    library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    try:
        with served(library) as server:
            yield server
    finally:
        library.store.close()


def row_state(page, name: str) -> str:
    return page.locator("#models tbody tr", has_text=name).locator("td").nth(8).inner_text()


def test_load_chat_streamed_and_unload(page, gemma_ui):
    server = gemma_ui
    runtime = server.runtime
    open_ui(page, server)
    page.locator("#models tbody tr", has_text="gemma").click()
    page.wait_for_selector("#detail-title")
    page.click("#load")
    page.wait_for_selector("#plan-message")
    assert "memory estimate" in page.inner_text("#plan-message") and "free" in page.inner_text("#plan-message")
    page.click("#confirm-load")
    page.wait_for_function("[...document.querySelectorAll('#models tbody tr')].some(r => r.textContent.includes('gemma') && r.textContent.includes('loaded'))",
                           timeout=120_000)
    assert runtime.find("gemma") is not None
    # Loading the other chat model would replace Gemma: the page says so before acting.
    page.locator("#models tbody tr", has_text="tiny").click()
    page.wait_for_function("document.getElementById('detail-title').textContent === 'tiny'")
    page.click("#load")
    page.wait_for_selector("#plan-message")
    assert "loading tiny unloads gemma" in page.inner_text("#plan-message")
    page.click("#cancel-load")

    # The runtime table: queue and memory measured against the estimate.
    page.click("#tab-runtime")
    row = page.locator("#runtime tbody tr[data-name=gemma]")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "chat" and cells[2] == "llamacpp"
    assert cells[7].endswith("MiB") and cells[8].endswith("MiB")  # RAM measured, RAM estimated

    # The playground: a streamed answer.
    page.click("#tab-playground")
    page.select_option("#chat-model", "gemma")
    page.fill("#chat-system", "Answer in one word.")
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", "12")
    page.fill("#chat-input", "What is the capital of France?")
    page.click("#chat-send")
    answer = page.locator(".turn-assistant[data-done=true]")
    answer.wait_for(timeout=120_000)
    assert not page.locator(".turn-error").count(), page.inner_text("#chat-log")
    assert int(answer.get_attribute("data-chunks")) >= 2  # arrived in pieces
    assert answer.inner_text().strip() != "assistant:"
    assert runtime.find("gemma").queue.served >= 1

    # Unload from the runtime table.
    page.click("#tab-runtime")
    page.click("#runtime button[data-unload]")
    page.wait_for_selector("#runtime-empty:not([hidden])")
    assert runtime.find("gemma") is None


def test_embeddings_similarity_matrix(page, ui_home, minilm_path):
    corral_st = pytest.importorskip("corral_sentence_transformers")
    library = build_library(ui_home, corral_st)
    library.import_path(minilm_path, name="minilm")
    try:
        with served(library) as server:
            open_ui(page, server, "#playground")
            page.select_option("#embed-model", "minilm")
            page.fill("#embed-input", "a cat sits on the mat\na kitten rests on a rug\nstock prices fell sharply")
            page.click("#embed-run")
            page.wait_for_selector("#similarity", timeout=120_000)
            value = lambda i, j: float(page.inner_text(f"#similarity td[data-i='{i}'][data-j='{j}']"))  # noqa: E731
            assert value(0, 0) == pytest.approx(1.0, abs=1e-3)
            assert value(0, 1) > value(0, 2)  # the two cat sentences are closer
            assert "384 dimensions" in page.inner_text("#embed-result")
    finally:
        library.store.close()
