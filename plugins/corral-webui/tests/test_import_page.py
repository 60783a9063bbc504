"""The import page's folder scan: a dry-run preview that adds nothing, then adoption of what it listed."""

from __future__ import annotations

from corral.testing import write_tiny_gguf
from ui_helpers import open_ui


def test_scan_previews_before_adding(page, ui_server, ui_home, ui_library):
    folder = ui_home / "models"
    write_tiny_gguf(folder / "one.gguf", name="one")
    write_tiny_gguf(folder / "sub" / "two.gguf", name="two")
    open_ui(page, ui_server, "#import")
    page.fill("#scan-path", str(folder))
    page.click("#scan-preview")
    page.wait_for_selector("#scan-table")
    assert "2 models would be added" in page.inner_text("#scan-result")
    statuses = page.locator("#scan-table tbody td:first-child").all_inner_texts()
    assert statuses == ["would-add", "would-add"]
    assert ui_library.store.list_models() == []  # the preview added nothing
    page.click("#scan-apply")
    page.wait_for_function("document.getElementById('scan-result').textContent.includes('Added 2 models')")
    # named by their general.name and quantization
    assert sorted(m.name for m in ui_library.store.list_models()) == ["one-f32", "two-f32"]
    page.click("#tab-library")
    assert page.locator("#models tbody tr").count() == 2


def test_a_path_outside_the_allowed_folders_is_refused(page, ui_server, tmp_path, ui_library):
    outside = write_tiny_gguf(tmp_path / "elsewhere" / "x.gguf")
    open_ui(page, ui_server, "#import")
    page.fill("#import-path", str(outside))
    page.click("#import-run")
    page.wait_for_selector("#import-result [role=alert]")
    assert "--allow-path" in page.inner_text("#import-result")
    assert ui_library.store.list_models() == []


def test_an_lmstudio_store_is_previewed_then_adopted(page, ui_server, ui_home, ui_library):
    store = ui_home / "lmstudio-models"
    write_tiny_gguf(store / "ggml-org" / "tiny-chat-GGUF" / "tiny-chat-Q8_0.gguf", name="tiny-chat")
    open_ui(page, ui_server, "#import")
    page.select_option("#scan-layout", "lmstudio")
    page.fill("#scan-path", str(store))
    page.click("#scan-preview")
    page.wait_for_selector("#scan-table")
    [name] = page.locator("#scan-table tbody td:nth-child(2)").all_inner_texts()
    assert name.startswith("ggml-org/tiny-chat-GGUF")  # the store's publisher/model names it
    assert ui_library.store.list_models() == []
    page.click("#scan-apply")
    page.wait_for_function("document.getElementById('scan-result').textContent.includes('Added 1 model')")
    model = ui_library.store.get_model(name)
    assert model.provenance.hub == "lmstudio" and model.provenance.repo == "ggml-org/tiny-chat-GGUF"
