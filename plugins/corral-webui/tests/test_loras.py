"""LoRAs in the detail panel: bind one (checked against the base), load the base with it at a chosen
weight (llama.cpp on a tiny GGUF), save that weight as its default, unbind it with its file left on disk."""

from __future__ import annotations

import pytest

from corral.testing import write_tiny_gguf
from ui_helpers import build_library, open_ui, served


def test_bind_load_with_weight_and_unbind(page, ui_home):
    corral_llamacpp = pytest.importorskip("corral_llamacpp")
    factories = pytest.importorskip("factories")  # the core tests' file writers (gguf)
    library = build_library(ui_home, corral_llamacpp)
    library.import_path(write_tiny_gguf(ui_home / "tiny.gguf"), name="tiny")
    library.update_settings("tiny", {"n_ctx": 256, "threads": 1})
    lora = factories.write_lora_gguf(ui_home / "loras" / "style.gguf")
    mismatched = factories.write_lora_gguf(ui_home / "loras" / "other.gguf", n_embd=32, n_head=2, n_head_kv=1)
    try:
        with served(library) as server:
            open_ui(page, server)
            page.click("#models tbody tr")
            page.wait_for_selector("#lora-form")
            # One of another shape is refused with the base check's reason.
            page.fill("#lora-path", str(mismatched))
            page.click("#lora-form button[type=submit]")
            page.wait_for_function("document.getElementById('lora-message').classList.contains('bad')")
            assert library.store.list_loras() == []
            page.fill("#lora-path", str(lora))
            page.fill("#lora-name", "style")
            page.fill("#lora-weight", "0.5")
            page.click("#lora-form button[type=submit]")
            page.wait_for_selector("#loras tr[data-lora=style]")
            assert [(l.name, l.weight) for l in library.store.list_loras()] == [("style", 0.5)]
            # Load with it at another weight.
            page.check("#loras tr[data-lora=style] .lora-use")
            page.fill("#loras tr[data-lora=style] .lora-weight", "0.75")
            page.click("#load")
            page.wait_for_selector("#plan-message")
            page.click("#confirm-load")
            page.wait_for_function("document.querySelector('#detail .state-loaded')", timeout=120_000)
            entry = server.runtime.find("tiny")
            assert [(r.lora.name, r.weight) for r in entry.loras] == [("style", 0.75)]
            # Keep 0.75 as its default weight.
            page.fill("#loras tr[data-lora=style] .lora-weight", "0.75")
            page.click("#loras tr[data-lora=style] .lora-save")
            page.wait_for_function("document.getElementById('notice').textContent.includes('weight 0.75 by default')")
            assert [(l.name, l.weight) for l in library.store.list_loras()] == [("style", 0.75)]
            page.click("#unload")
            page.wait_for_function("!document.querySelector('#detail .state-loaded')")
            assert server.runtime.find("tiny") is None
            page.click("#loras tr[data-lora=style] .lora-remove")
            page.wait_for_function("!document.querySelector('#loras')")
            assert library.store.list_loras() == [] and lora.exists()
    finally:
        library.store.close()
