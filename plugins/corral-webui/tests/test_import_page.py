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
    assert sorted(m.name for m in ui_library.store.list_models()) == ["one", "two"]
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
