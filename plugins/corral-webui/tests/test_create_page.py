"""The create page against corral-transformers' routes: the live preview follows the fields and shows
what `corral create --dry-run` prints; a tiny free-preset model is written and appears in the library
table; a bad value shows the create command's message and writes nothing; a tokenizer trained from an
uploaded corpus is offered to the form and used by a create."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ui_helpers import build_library, open_ui, served

#: A model that builds in a few seconds on a CPU (about 1.4M parameters).
TINY = {"hidden_size": "128", "layers": "1", "heads": "2", "ffn_size": "128", "context_length": "128",
        "vocab_size": "10000"}


@pytest.fixture
def create_ui(ui_home):
    corral_transformers = pytest.importorskip("corral_transformers")
    library = build_library(ui_home, corral_transformers)
    try:
        with served(library) as server:
            yield server, library
    finally:
        library.store.close()


def open_create(page, server):
    open_ui(page, server, "#create")
    page.wait_for_selector("#create-preview tr[data-row=parameters]")


def settled(page) -> None:
    """Wait until the preview has answered the fields as they are now (no request waiting)."""
    page.wait_for_function("document.getElementById('create-preview').dataset.pending === 'false'")


def preview_rows(page) -> dict[str, str]:
    rows = page.locator("#create-preview tr")
    return {rows.nth(i).locator("th").inner_text(): rows.nth(i).locator("td").inner_text() for i in range(rows.count())}


def cli_dry_run(ui_home, *args: str) -> tuple[dict, str]:
    """``corral create ... --dry-run`` (JSON and text) through the real CLI, with the same plugin."""
    from click.testing import CliRunner

    import corral_transformers
    from corral.testing import build_cli
    from corral.testing.hosts import installed_host

    env = {"CORRAL_HOME": str(ui_home)}
    with installed_host(corral_transformers):
        data = CliRunner().invoke(build_cli(), ["create", *args, "--dry-run", "--json"], env=env, catch_exceptions=False)
        text = CliRunner().invoke(build_cli(), ["create", *args, "--dry-run"], env=env, catch_exceptions=False)
    assert data.exit_code == 0 and text.exit_code == 0, data.output + text.output
    return json.loads(data.stdout), text.stdout


def test_preview_follows_the_fields_and_matches_the_cli_dry_run(page, create_ui, ui_home):
    server, _ = create_ui
    open_create(page, server)
    assert page.locator("#create-preset option").all_inner_texts() == ["small", "medium", "large", "free"]
    assert preview_rows(page)["parameters"] == "100,092,672 (100.1M)"  # the small preset
    assert page.get_attribute("#create-layers", "placeholder") == "12"
    out = str(ui_home / "created" / "six-layers")
    page.fill("#create-path", out)
    page.fill("#create-layers", "6")
    settled(page)
    shown = preview_rows(page)
    data, text = cli_dry_run(ui_home, "--preset", "small", "--layers", "6", "--out", out)
    assert shown["parameters"].startswith(f"{data['parameters']:,} (")
    assert int(page.get_attribute("#create-preview", "data-parameters")) == data["parameters"] < 100_092_672
    # Every line the CLI prints, word for word (the memory available moves between two readings).
    printed = {line.strip().split("  ", 1)[0]: line.strip().split("  ", 1)[1].strip()
               for line in text.splitlines()[1:] if line.strip()}
    assert printed.keys() == shown.keys()
    for name, value in printed.items():
        if name == "build memory":
            assert shown[name].split(" needed")[0] == value.split(" needed")[0]
        else:
            assert shown[name] == value, name

    # The free preset: its rules as placeholders; the preview follows a field that changes.
    page.select_option("#create-preset", "free")
    assert page.get_attribute("#create-hidden_size", "placeholder") == "required"
    page.fill("#create-layers", "")
    settled(page)
    assert page.inner_text("#create-message") == "the free preset needs --hidden-size and --layers (or pick --preset small, medium or large)"
    page.fill("#create-hidden_size", "256")
    page.fill("#create-layers", "2")
    settled(page)
    data, _ = cli_dry_run(ui_home, "--preset", "free", "--hidden-size", "256", "--layers", "2", "--out", out)
    assert int(page.get_attribute("#create-preview", "data-parameters")) == data["parameters"]
    assert preview_rows(page)["attention heads"] == "4 (KV heads 4, head size 64)"


def test_tiny_free_model_is_created_and_listed(page, create_ui, ui_home):
    server, library = create_ui
    open_create(page, server)
    page.select_option("#create-preset", "free")
    for name, value in TINY.items():
        page.fill(f"#create-{name}", value)
    out = ui_home / "created" / "tiny-lm"
    page.fill("#create-path", str(out))
    settled(page)
    expected = int(page.get_attribute("#create-preview", "data-parameters"))
    page.click("#create-run")
    page.wait_for_selector("#create-message[data-created]", timeout=180_000)
    assert "Added to the library as tiny-lm (text-generation)" in page.inner_text("#create-message")
    model = library.store.get_model("tiny-lm")
    assert (str(model.category), str(model.format), model.facts.parameters) == ("text-generation", "hf-dir", expected)
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    page.click("#tab-library")
    row = page.locator("#models tbody tr", has_text="tiny-lm")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "text-generation"


def test_bad_value_shows_the_message_and_creates_nothing(page, create_ui, ui_home):
    server, library = create_ui
    open_create(page, server)
    out = ui_home / "created" / "never"
    page.fill("#create-path", str(out))
    page.fill("#create-vocab_size", "5000")
    settled(page)
    refused = "vocab size 5,000 is outside 10,000–100,000 (--vocab-size)"
    assert page.inner_text("#create-message") == refused
    assert page.get_attribute("#create-message", "role") == "alert"
    page.click("#create-run")
    page.wait_for_function("!document.getElementById('create-run').disabled")
    assert page.inner_text("#create-message") == refused
    page.fill("#create-vocab_size", "10000")
    page.fill("#create-heads", "5")
    settled(page)
    assert page.inner_text("#create-message").startswith("hidden size 768 is not divisible by 5 attention heads")
    page.click("#create-run")
    page.wait_for_function("!document.getElementById('create-run').disabled")
    assert "not divisible" in page.inner_text("#create-message")
    assert library.store.list_models() == [] and not out.exists()


def word_corpus(path: Path) -> Path:
    """Enough distinct made-up words for an 8,000-token BPE (as the tokenizer tests' in-range corpus)."""
    rng = random.Random(1)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = list({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(12000)})
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(6000)) + "\n",
                    encoding="utf-8")
    return path


def test_tokenizer_trained_from_an_uploaded_corpus_is_used_by_create(page, create_ui, ui_home, tmp_path):
    server, library = create_ui
    corpus = word_corpus(tmp_path / "words.txt")
    open_create(page, server)
    page.set_input_files("#tokenizer-corpus", str(corpus))
    page.fill("#tokenizer-name", "words")
    page.select_option("#tokenizer-type", "bpe")
    page.fill("#tokenizer-vocab", "8000")
    page.click("#tokenizer-run")
    page.wait_for_selector("#tokenizer-message[data-trained=words]", timeout=180_000)
    assert 'Trained a 8,000-token bpe tokenizer "words" on 6,000 lines of words.txt' in page.inner_text("#tokenizer-message")
    saved = ui_home / "tokenizers" / "words"
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in saved.iterdir()}
    assert [p.name for p in (ui_home / "tokenizers").iterdir()] == ["words"]  # the upload is gone
    page.wait_for_selector("#tokenizer-list li[data-tokenizer=words]")  # the list is read again after the training
    assert page.locator("#tokenizer-list li[data-tokenizer=words]").count() == 1
    page.wait_for_function("document.getElementById('create-tokenizer').value === 'words'")

    # 8,000 tokens: under a model vocabulary's minimum, the create command's advice is shown.
    page.select_option("#create-preset", "free")
    for name, value in TINY.items():
        if name != "vocab_size":
            page.fill(f"#create-{name}", value)
    page.fill("#create-path", str(ui_home / "created" / "words-lm"))
    settled(page)
    assert "has 8,000 tokens, fewer than a model vocabulary's minimum of 10,000" in page.inner_text("#create-message")
    page.fill("#create-vocab_size", "10000")
    settled(page)
    assert preview_rows(page)["vocabulary"] == f"10,000 tokens; tokenizer: {saved} (8,000 tokens)"
    page.click("#create-run")
    page.wait_for_selector("#create-message[data-created]", timeout=180_000)
    from transformers import AutoTokenizer

    model = library.store.get_model("words-lm")
    assert len(AutoTokenizer.from_pretrained(str(model.path))) == 8000


def test_without_corral_transformers_the_page_says_what_to_install(page, ui_server):
    open_ui(page, ui_server, "#create")
    page.wait_for_selector("#create-missing:not([hidden])")
    assert "needs the corral-transformers plugin" in page.inner_text("#create-missing")
    assert page.is_hidden("#create-form")
