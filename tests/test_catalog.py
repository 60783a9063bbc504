"""The model catalog (shipped data, plugin entries through ``register_catalog``, user entries) and
``corral recommend``."""

from __future__ import annotations

import json

import pytest

from corral import hookimpl
from corral.catalog import Catalog, CatalogError, builtin_entries, load_catalog
from corral.catalog.estimate import DEFAULT_CTX, estimate_entry
from corral.catalog.recommend import recommend
from corral.errors import Conflict, NotFound
from corral.estimate import estimate_memory
from corral.records import CatalogEntry, CatalogQuant, Category, Format
from corral.testing.cli import as_json

REQUIRED = [
    "gemma-3-270m-it", "gemma-3-1b-it", "gemma-3-4b-it", "gemma-3-12b-it", "llama-3.2-1b-instruct",
    "llama-3.2-3b-instruct", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct",
    "qwen2.5-7b-instruct", "phi-3.5-mini-instruct", "mistral-7b-instruct-v0.3", "all-minilm-l6-v2",
    "bge-reranker-base", "bge-reranker-v2-m3", "stable-diffusion-v1-5", "flux.1-schnell", "kokoro-82m",
]  # fmt: skip


def one_line_error(result, fragment):
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


# --- the shipped data ---------------------------------------------------------------------------------


def test_builtin_catalog_has_the_popular_models():
    entries = {e.id: e for e in builtin_entries()}
    assert set(REQUIRED) <= set(entries)
    assert {e.category for e in entries.values()} == set(Category)  # something for every category
    for entry in entries.values():
        assert entry.origin == "builtin" and "/" in entry.repo and entry.parameters > 0
        assert entry.quantizations and all(q.pattern and q.bits > 0 for q in entry.quantizations)
        if entry.format == Format.GGUF:
            # what the llama.cpp memory model needs
            assert entry.layers and entry.hidden_size and entry.heads and entry.kv_heads and entry.vocab_size
            assert entry.context_length
        for quant in entry.quantizations:
            est = estimate_entry(entry, quant)
            assert est.parts["weights"] > 0 and est.total_bytes > est.parts["weights"]


def test_gemma3_window_and_quant_patterns():
    entry = load_catalog_entry("gemma-3-1b-it")
    assert entry.sliding_window == 512 and entry.architecture == "gemma3"
    assert entry.quant("q4_k_m").pattern == "*it-Q4_K_M.gguf"
    # windowed layers make a long context much cheaper when the window cache is used
    full = estimate_entry(entry, entry.quant("Q4_K_M"), {"n_ctx": 32768})
    windowed = estimate_entry(entry, entry.quant("Q4_K_M"), {"n_ctx": 32768, "swa_full": False})
    assert windowed.parts["kv_cache"] < full.parts["kv_cache"] / 4


def load_catalog_entry(entry_id):
    return Catalog(builtin_entries()).get(entry_id)


@pytest.mark.slow
def test_catalog_formula_agrees_with_the_real_file(gemma_path, library):
    """params × bits (with llama.cpp's rules for the output matrix and narrow rows) against the estimate
    from the real Gemma 3 270M Q4_K_M header, at the recommendation context (the file's estimate also
    counts the CPU's repacked copies of its Q4_K matrices, about 5 % of the weights)."""
    entry = load_catalog_entry("gemma-3-270m-it")
    from_catalog = estimate_entry(entry, entry.quant("Q4_K_M"))
    model = library.import_path(gemma_path).model
    from_file = estimate_memory(model, {"n_ctx": DEFAULT_CTX})
    assert abs(from_catalog.total_bytes - from_file.total_bytes) / from_file.total_bytes < 0.05
    assert abs(from_catalog.parts["weights"] - from_file.parts["weights"]) / from_file.parts["weights"] < 0.08


# --- recommend ----------------------------------------------------------------------------------------


def test_recommend_two_gb_all_fit_and_orders_differ(run):
    quality = as_json(run("recommend", "--memory", "2", "--json"))
    size = as_json(run("recommend", "--memory", "2", "--prefer", "size", "--json"))
    assert quality["budget_bytes"] == 2 * 1000**3
    entries = {e.id: e for e in builtin_entries()}
    for result in (quality, size):
        picks = result["recommendations"]
        assert len(picks) == 5
        for pick in picks:
            entry = entries[pick["id"]]
            estimate = estimate_entry(entry, entry.quant(pick["quant"]))  # re-estimated independently
            assert estimate.total_bytes == pick["estimate"]["total_bytes"] <= 2 * 1000**3
    q_ids = [p["id"] for p in quality["recommendations"]]
    s_ids = [p["id"] for p in size["recommendations"]]
    assert q_ids != s_ids
    # quality: biggest models first; size: smallest footprint first
    params = [p["parameters"] for p in quality["recommendations"]]
    assert params == sorted(params, reverse=True)
    totals = [p["estimate"]["total_bytes"] for p in size["recommendations"]]
    assert totals == sorted(totals)
    text = run("recommend", "--memory", "2").stdout
    assert "corral pull" in text and q_ids[0] in text


def test_recommend_by_category_and_nothing_fits(run):
    picks = as_json(run("recommend", "--memory", "64", "--category", "image", "--json"))["recommendations"]
    assert picks and {p["category"] for p in picks} == {"image"}
    assert picks[0]["id"] == "flux.1-schnell"  # the biggest image model fits in 64 GB
    assert "Nothing in the catalog fits" in run("recommend", "--memory", "0.01").stdout


def test_recommend_picks_one_quant_per_model():
    entries = builtin_entries()
    quality = recommend(entries, 8 * 1000**3, prefer="quality", limit=50)
    assert len({r.entry.id for r in quality}) == len(quality)
    gemma = next(r for r in quality if r.entry.id == "gemma-3-1b-it")
    assert gemma.quant.name == "Q8_0"  # most precise that fits, capped at 8.5 bits (not F16)
    size = recommend(entries, 8 * 1000**3, prefer="size", limit=50)
    assert next(r for r in size if r.entry.id == "gemma-3-1b-it").quant.name == "Q4_K_M"  # its default


# --- user and plugin entries --------------------------------------------------------------------------


def test_catalog_ls_show(run):
    ids = [e["id"] for e in as_json(run("catalog", "ls", "--json"))]
    assert set(REQUIRED) <= set(ids)
    chat = as_json(run("catalog", "ls", "--category", "embedding", "--json"))
    assert chat and all(e["category"] == "embedding" for e in chat)
    shown = as_json(run("catalog", "show", "qwen2.5-0.5b-instruct", "--json"))
    assert shown["repo"] == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    assert set(shown["estimates"]) == {q["name"] for q in shown["quantizations"]}
    assert "Qwen2.5 0.5B" in run("catalog", "show", "qwen2.5-0.5b-instruct").stdout
    one_line_error(run("catalog", "show", "qwen2.5"), "did you mean")


def test_catalog_add_from_options_and_file(run, home, tmp_path):
    out = run("catalog", "add", "--id", "my-tiny-chat", "--category", "chat", "--repo", "me/tiny-GGUF",
              "--parameters", "150M", "--context-length", "8192", "--quant", "Q4_K_M=*Q4_K_M.gguf",
              "--quant", "Q8_0", "--layers", "12", "--hidden-size", "512", "--heads", "8", "--kv-heads", "2",
              "--vocab-size", "32000")  # fmt: skip
    assert out.exit_code == 0, out.output
    entry = as_json(run("catalog", "show", "my-tiny-chat", "--json"))
    assert entry["origin"] == "user" and entry["parameters"] == 150_000_000
    assert [q["bits"] for q in entry["quantizations"]] == [4.89, 8.5]  # known bits per weight
    assert (home / "catalog.json").is_file()
    picks = as_json(run("recommend", "--memory", "0.4", "--prefer", "size", "--category", "chat", "--json"))
    assert "my-tiny-chat" in [p["id"] for p in picks["recommendations"]]

    file = tmp_path / "mine.json"
    file.write_text(json.dumps({"id": "my-embedder", "family": "mine", "name": "My embedder",
                                "category": "embedding", "format": "hf-dir", "repo": "me/embedder",
                                "parameters": 1000000, "quantizations": [{"name": "fp32", "bits": 32,
                                                                          "pattern": "*.safetensors"}]}))  # fmt: skip
    assert run("catalog", "add", file).exit_code == 0
    assert load_catalog(home=home).get("my-embedder").origin == "user"

    one_line_error(run("catalog", "add", file), "already exists")
    one_line_error(run("catalog", "add", "--id", "gemma-3-1b-it", "--category", "chat", "--repo", "a/b",
                       "--parameters", "1B", "--quant", "Q4_K_M"), "already exists (builtin)")  # fmt: skip
    one_line_error(run("catalog", "rm", "gemma-3-1b-it"), "cannot be removed")
    assert run("catalog", "rm", "my-embedder").exit_code == 0
    with pytest.raises(NotFound):
        load_catalog(home=home).get("my-embedder")


def test_catalog_bad_input_is_one_line(run, home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x-1", "family": "x", "name": "X", "category": "chatty", "format": "gguf", '
                   '"repo": "a/b", "parameters": 5, "quantizations": [{"name": "Q4_K_M", "bits": 4.89}]}')
    one_line_error(run("catalog", "add", bad), "bad.json: catalog entry x-1 is invalid")
    bad.write_text("{not json")
    one_line_error(run("catalog", "add", bad), "not valid JSON")
    one_line_error(run("catalog", "add", "--id", "x"), "needs a FILE or the options")
    one_line_error(run("catalog", "add", "--id", "Bad Id", "--category", "chat", "--repo", "a/b",
                       "--parameters", "1B", "--quant", "Q4_K_M"), "lower-case")  # fmt: skip
    out = run("catalog", "add", "--id", "x", "--category", "chat", "--repo", "a/b", "--parameters", "lots",
              "--quant", "Q4_K_M")  # fmt: skip
    assert out.exit_code == 2 and "not a parameter count" in out.stderr
    assert not (home / "catalog.json").exists()  # nothing half-written
    home.mkdir(exist_ok=True)
    (home / "catalog.json").write_text("[1, 2")
    one_line_error(run("catalog", "ls"), "catalog.json: not valid JSON")


PLUGIN_ENTRY = CatalogEntry(
    id="plugin-model", family="plugged", name="A plugin's model", category=Category.TTS, format=Format.KOKORO,
    repo="vendor/plugin-model", parameters=50_000_000, quantizations=(CatalogQuant("fp32", 32.0, "*.pth"),),
)  # fmt: skip


class catalog_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_catalog(register):
        register(PLUGIN_ENTRY)
        register(CatalogEntry(id="gemma-3-1b-it", family="x", name="shadow", category=Category.CHAT,
                              format=Format.GGUF, repo="x/y", parameters=1,
                              quantizations=(CatalogQuant("Q4_K_M", 4.89),)))  # fmt: skip


class broken_catalog_plugin:  # noqa: N801
    @staticmethod
    @hookimpl
    def register_catalog(register):
        register("not an entry")


def test_register_catalog_hook(run, host, capsys):
    host.pm.register(catalog_plugin, name="catalog-plugin")
    host.pm.register(broken_catalog_plugin, name="broken-catalog")
    catalog = load_catalog(host)
    entry = catalog.get("plugin-model")
    assert entry.origin == "catalog-plugin"
    assert catalog.get("gemma-3-1b-it").origin == "builtin"  # a plugin cannot redefine a shipped id
    assert "broken-catalog" in capsys.readouterr().err
    listed = as_json(run("catalog", "ls", "--category", "tts", "--json"))
    assert {"plugin-model", "kokoro-82m"} <= {e["id"] for e in listed}
    # `corral plugins` shows the problem on the plugin's line; the plugin itself stays loaded.
    infos = {p["name"]: p for p in as_json(run("plugins", "--json"))}
    assert infos["broken-catalog"]["error"] is None
    assert infos["broken-catalog"]["problems"] == ["failed to add catalog entries: plugin 'broken-catalog' "
                                                   "registered 'not an entry', which is not a CatalogEntry"]
    assert infos["catalog-plugin"]["problems"] == []
    assert "problem: failed to add catalog entries" in run("plugins").stdout


def test_catalog_object_rules(tmp_path):
    catalog = Catalog(builtin_entries(), user_path=tmp_path / "catalog.json")
    with pytest.raises(Conflict):
        catalog.add([load_catalog_entry("kokoro-82m")])
    with pytest.raises(CatalogError, match="parameters"):
        from corral.catalog import check_entry

        zero = CatalogEntry(id="z", family="z", name="z", category=Category.CHAT, format=Format.GGUF, repo="a/b",
                            parameters=0, quantizations=(CatalogQuant("Q8_0", 8.5),))  # fmt: skip
        check_entry(zero, "test")
