"""The library page in Chromium: import a model by path and see its facts, the table's tabs, search and
sort, the detail panel, a setting changed and saved; the page reachable with keys on; every request
stays on this machine (the ``page`` fixture checks it)."""

from __future__ import annotations

import pytest

from corral.testing import write_tiny_gguf
from ui_helpers import build_library, open_ui, served


def test_import_by_path_shows_the_detected_facts(page, ui_server, ui_home, ui_library, traffic):
    model = write_tiny_gguf(ui_home / "models" / "tiny-llama.gguf", n_layers=3, context_length=4096)
    open_ui(page, ui_server)
    assert page.is_visible("#empty")  # nothing yet
    page.click("#tab-import")
    page.fill("#import-path", str(model))
    page.fill("#import-name", "tiny")
    page.click("#import-run")
    page.wait_for_selector("#imported")
    assert "Imported tiny: chat, gguf, llama" in page.inner_text("#imported")
    page.click("#tab-library")
    row = page.locator("#models tbody tr", has_text="tiny")
    cells = row.locator("td").all_inner_texts()
    record = ui_library.store.get_model("tiny")
    assert cells[:4] == ["tiny", "chat", "gguf", "llama"]
    assert cells[5] == "F32" and cells[6] == "4096" and cells[8] == "available"
    assert record.facts.context_length == 4096 and record.path == model
    # The detail panel: facts, the detection's reasons, the file.
    row.click()
    page.wait_for_selector("#detail-title")
    detail = page.inner_text("#detail")
    assert "context length" in detail and "4096" in detail
    assert "general.architecture" in page.inner_text("#reasons")
    assert str(model) in page.inner_text("#detail .files")
    assert any(u.endswith("/corral/ui/api/import") for u in traffic.urls)


def test_tabs_search_and_sort(page, ui_home, ui_library):
    for name, ctx in (("alpha", 512), ("beta", 8192), ("gamma", 2048)):
        ui_library.import_path(write_tiny_gguf(ui_home / f"{name}.gguf", context_length=ctx, name=name), name=name)
    with served(ui_library) as server:
        open_ui(page, server)
        names = lambda: page.locator("#models tbody tr td:first-child").all_inner_texts()  # noqa: E731
        assert names() == ["alpha", "beta", "gamma"]
        page.click("#models th[data-key=context] button")
        assert names() == ["alpha", "gamma", "beta"]
        page.click("#models th[data-key=context] button")
        assert names() == ["beta", "gamma", "alpha"]
        assert page.get_attribute("#models th[data-key=context]", "aria-sort") == "descending"
        page.fill("#search", "gam")
        page.wait_for_function("document.querySelectorAll('#models tbody tr').length === 1")
        assert names() == ["gamma"]
        page.fill("#search", "")
        page.wait_for_function("document.querySelectorAll('#models tbody tr').length === 3")
        tabs = page.locator("#category-tabs [role=tab]").all_inner_texts()
        assert tabs == ["All (3)", "chat (3)"]
        # Keyboard: a focused row opens with Enter.
        page.focus("#models tbody tr:first-child")
        page.keyboard.press("Enter")
        page.wait_for_selector("#detail-title")
        assert page.inner_text("#detail-title") in ("alpha", "beta", "gamma")


def test_a_changed_setting_is_saved(page, ui_home, ui_library):
    ui_library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    with served(ui_library) as server:
        open_ui(page, server)
        page.click("#models tbody tr")
        page.wait_for_selector("#settings-form")
        field = page.locator("#setting-n_ctx")
        assert field.get_attribute("min") == "0"  # the declared bound
        assert "context length" in page.inner_text("#setting-n_ctx-help")
        field.fill("1536")
        page.click("#settings-form button[type=submit]")
        page.wait_for_function("document.getElementById('settings-message').textContent.startsWith('Saved')")
        assert ui_library.store.get_model("tiny").settings == {"n_ctx": 1536}
        # Out of bounds: the library refuses, the form says why, nothing changes.
        field.evaluate("el => el.removeAttribute('min')")
        field.fill("-5")
        page.click("#settings-form button[type=submit]")
        page.wait_for_function("document.getElementById('settings-message').classList.contains('bad')")
        assert "at least 0" in page.inner_text("#settings-message")
        assert ui_library.store.get_model("tiny").settings == {"n_ctx": 1536}
        # Emptying the field goes back to the default.
        field.fill("")
        page.click("#settings-form button[type=submit]")
        page.wait_for_function("document.getElementById('settings-message').textContent.startsWith('Saved')")
        assert ui_library.store.get_model("tiny").settings == {}


def test_a_bound_the_value_must_be_above_is_shown_and_kept(page, ui_home):
    """top_p (a chat driver's sampling default) must be above 0, not merely at least 0: the field's help
    says so and a saved 0 is refused with the reason, nothing saved."""
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    library = build_library(ui_home, corral_llamacpp)
    try:
        library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
        with served(library) as server:
            open_ui(page, server)
            page.click("#models tbody tr")
            page.wait_for_selector("#settings-form")
            assert "(above 0)" in page.inner_text("#setting-top_p-help")
            assert "(min 0)" in page.inner_text("#setting-temperature-help")
            page.locator("#setting-top_p").fill("0")
            page.click("#settings-form button[type=submit]")
            page.wait_for_function("document.getElementById('settings-message').classList.contains('bad')")
            assert "top_p must be above 0" in page.inner_text("#settings-message")
            assert library.store.get_model("tiny").settings == {}
    finally:
        library.store.close()


def test_with_keys_on_the_page_asks_for_a_key_once(page, ui_home, ui_library, traffic):
    ui_library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    with served(ui_library, api_key="s3cret") as server:
        page.goto(server.url + "/")
        page.wait_for_selector("#key-dialog[open]")
        page.fill("#key-input", "wrong")
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('key-problem').textContent.includes('not accepted')")
        page.fill("#key-input", "s3cret")
        page.keyboard.press("Enter")
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator("#models tbody tr").count() == 1
        # A reload in the same session does not ask again.
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        assert not page.is_visible("#key-dialog")
        # The page and its files answer without a key; the JSON routes do not.
        assert page.request.get(server.url + "/ui/style.css").status == 200
        assert page.request.get(server.url + "/corral/ui/api/models").status == 401
        assert page.request.get(server.url + "/v1/models").status == 401


def test_rename_and_remove_with_confirmation_keep_the_files(page, ui_home, ui_library):
    path = write_tiny_gguf(ui_home / "tiny.gguf")
    ui_library.import_path(path, name="tiny")
    with served(ui_library) as server:
        open_ui(page, server)
        page.click("#models tbody tr")
        page.wait_for_selector("#edit-form")
        page.fill("#edit-name", "renamed")
        page.fill("#edit-description", "a tiny test model")
        page.click("#edit-form button[type=submit]")
        page.wait_for_function("document.getElementById('models').textContent.includes('renamed')")
        assert ui_library.store.get_model("renamed").description == "a tiny test model"
        # Remove asks first; Cancel keeps the record.
        page.click("#remove")
        assert str(path) in page.inner_text("#remove-question")
        page.click("#cancel-remove")
        assert ui_library.store.list_models()
        page.click("#remove")
        page.click("#confirm-remove")
        page.wait_for_selector("#empty:not([hidden])")
        assert ui_library.store.list_models() == []
        assert path.exists()  # the record went, the file stays
        assert "files stay on disk" in page.inner_text("#notice")
