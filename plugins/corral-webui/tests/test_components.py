"""Components in the detail panel: attach a multimodal projector to a tiny GGUF chat model through the
library's checks (a file of another kind is refused with the library's own message), see the model
become multimodal in the table, and detach it with its file left on disk."""

from __future__ import annotations

import pytest

from corral.api import ComponentKind, CorralError
from corral.testing import write_tiny_gguf
from ui_helpers import open_ui


def test_attach_refuse_and_detach_an_mmproj(page, ui_server, ui_library, ui_home):
    factories = pytest.importorskip("factories")  # the core tests' file writers (mmproj)
    ui_library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    other = write_tiny_gguf(ui_home / "other.gguf", name="other")
    mmproj = factories.write_mmproj_gguf(ui_home / "parts" / "mmproj-tiny.gguf")
    with pytest.raises(CorralError) as refused:
        ui_library.add_component("tiny", ComponentKind.MMPROJ, other)
    open_ui(page, ui_server)
    page.locator("#models tbody tr", has_text="tiny").click()
    page.wait_for_selector("#component-form")
    assert page.is_visible("#components-none")
    kinds = page.locator("#component-kind option").all_inner_texts()
    assert kinds == [k.value for k in ComponentKind]

    # A model file given as an mmproj: the library's message, nothing attached.
    page.select_option("#component-kind", "mmproj")
    page.fill("#component-path", str(other))
    page.click("#component-form button[type=submit]")
    page.wait_for_function("document.getElementById('component-message').classList.contains('bad')")
    assert page.inner_text("#component-message") == str(refused.value)
    assert ui_library.store.get_model("tiny").components == ()

    # The projector itself, chosen with the keyboard: attached, the model is multimodal now.
    page.focus("#component-kind")
    page.keyboard.press("Home")
    page.fill("#component-path", str(mmproj))
    page.press("#component-path", "Enter")
    page.wait_for_selector("#components tr[data-kind=mmproj]")
    assert str(mmproj) in page.inner_text("#components tr[data-kind=mmproj]")
    model = ui_library.store.get_model("tiny")
    assert [(c.kind, c.path) for c in model.components] == [(ComponentKind.MMPROJ, mmproj)]
    assert page.locator("#models tbody tr", has_text="tiny").locator("td").nth(1).inner_text() == "multimodal"

    page.click("#components tr[data-kind=mmproj] .component-remove")
    page.wait_for_selector("#components-none")
    assert ui_library.store.get_model("tiny").components == () and mmproj.exists()
    assert page.locator("#models tbody tr", has_text="tiny").locator("td").nth(1).inner_text() == "chat"
