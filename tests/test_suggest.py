"""'Did you mean ...?' wherever a model, LoRA, setting or choice is not found: the matcher, the CLI and the
HTTP error bodies of every protocol, read through the official clients."""

from __future__ import annotations

import pytest

from factories import write_lora_gguf, write_tiny_gguf
from corral.suggest import catalog_ids, closest, closest_ids, did_you_mean, model_hint
from corral.testing.cli import as_json, assert_clean_error, ok


def test_closest_names_ignore_case_and_separators():
    assert closest("gema3", ["gemma3", "minilm", "llama"]) == ["gemma3"]
    assert closest("Gemma_3", ["gemma-3", "qwen"]) == ["gemma-3"]
    assert closest("temprature", ["temperature", "top_p", "threads"]) == ["temperature"]
    assert closest("xyz", ["gemma3", "minilm"]) == []
    assert did_you_mean("cdua", ["cpu", "cuda", "mps"]) == "did you mean cuda?"
    assert did_you_mean("zzz", ["cpu"]) == ""


def test_ids_are_matched_by_prefix_and_typo():
    ids = ["5c0e0f3a9b21", "abcdef123456"]
    assert closest_ids("5c0e0f3a9b2l".replace("l", "0"), ids) == ["5c0e0f3a9b21"]  # one digit off
    assert closest_ids("5c0f", ids) == ["5c0e0f3a9b21"]
    assert closest_ids("gemma", ids) == []  # not hex: no id suggestion


def test_catalog_entries_are_suggested_by_their_start(home):
    assert "gemma-3-270m-it" in catalog_ids(home)
    hint = model_hint("gema3", ["gemma3"], [], home)
    assert hint.startswith("did you mean gemma3?") and "gemma-3-270m-it" in hint
    assert "corral catalog show" in model_hint("smollm2", [], [], home)
    assert model_hint("qqqqqq", ["gemma3"], [], home) == ""


def test_a_catalog_id_asked_as_a_model_says_how_to_get_it(run, home):
    from corral.testing.cli import assert_clean_error

    result = run("chat", "smollm2-135m-instruct", "hi")
    assert_clean_error(result, "no model 'smollm2-135m-instruct' in the library",
                       "it is in the catalog", "corral run smollm2-135m-instruct --pull")


def test_user_catalog_entries_count_too(home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "catalog.json").write_text('{"models": [{"id": "my-special-model"}]}')
    assert "my-special-model" in model_hint("my-specal-model", [], [], home)


@pytest.fixture
def library_with_gemma3(run, tmp_path):
    tiny = write_tiny_gguf(tmp_path / "g" / "gemma3-tiny.gguf")
    as_json(run("import", tiny, "--name", "gemma3", "--json"))
    return tiny


def test_show_suggests_library_models_and_catalog_entries(run, library_with_gemma3):
    result = run("show", "gema3")
    assert_clean_error(result, "no model 'gema3'", "did you mean gemma3?", "gemma-3-270m-it", "corral catalog show")
    assert result.exit_code == 2  # NotFound


def test_every_model_command_suggests(run, library_with_gemma3):
    for args in (("settings", "gemma3x"), ("edit", "gemm3", "--description", "x"), ("rm", "gemma", "--yes"),
                 ("lora", "ls", "gemma33")):
        assert_clean_error(run(*args), "did you mean gemma3?")
    doc = run("show", "gema3", "--json")
    assert doc.exit_code == 2 and "did you mean gemma3?" in doc.stdout


def test_a_mistyped_id_is_suggested(run, library_with_gemma3):
    ident = as_json(run("ls", "--json"))[0]["id"]
    typo = ident[:5] + ("0" if ident[5] != "0" else "1") + ident[6:]
    assert_clean_error(run("show", typo), f"did you mean {ident}?")


def test_far_names_get_the_list_hint(run, library_with_gemma3):
    assert_clean_error(run("show", "qqqqqq"), "no model 'qqqqqq'", "see `corral ls`")


def test_lora_names_are_suggested(run, tmp_path, library_with_gemma3):
    lora = write_lora_gguf(tmp_path / "l" / "style-lora.gguf")
    as_json(run("lora", "add", "gemma3", lora, "--name", "style-lora", "--json"))
    assert_clean_error(run("lora", "rm", "stlye-lora"), "no LoRA 'stlye-lora'", "did you mean style-lora?")


def test_setting_keys_and_choices_are_suggested(run, library_with_gemma3):
    assert_clean_error(run("settings", "gemma3", "--set", "sede=3"), "unknown setting 'sede'", "did you mean seed?")
    assert_clean_error(run("settings", "gemma3", "--set", "dtype=float61"), "must be one of",
                       "did you mean float16")


def test_catalog_entries_and_keys_are_suggested(run, home):
    assert_clean_error(run("catalog", "show", "gema-3-1b"), "no catalog entry 'gema-3-1b'", "did you mean gemma-3-1b-it")
    ok(run("keys", "add", "laptop"))
    assert_clean_error(run("keys", "rm", "labtop"), "no key named 'labtop'", "did you mean laptop?")


def test_model_names_complete_in_the_shell(run, library_with_gemma3, tmp_path):
    from corral.cli.base import MODEL_NAME

    as_json(run("import", write_tiny_gguf(tmp_path / "m" / "minitiny.gguf", context_length=1024), "--name", "mini", "--json"))
    assert [c.value for c in MODEL_NAME.shell_complete(None, None, "gem")] == ["gemma3"]
    assert sorted(c.value for c in MODEL_NAME.shell_complete(None, None, "")) == ["gemma3", "mini"]


def test_completion_through_click_lists_library_names(home, library_with_gemma3, monkeypatch):
    """The bash completion protocol itself (COMP_WORDS / COMP_CWORD) answers with the library's names."""
    from click.testing import CliRunner

    from corral.cli import build_cli

    env = {"_CORRAL_COMPLETE": "bash_complete", "COMP_WORDS": "corral show gem", "COMP_CWORD": "2"}
    result = CliRunner().invoke(build_cli(), [], env=env, prog_name="corral")
    assert "plain,gemma3" in result.stdout


# --- HTTP: the suggestion in each protocol's error body --------------------------------------------


@pytest.fixture
def server(home, tmp_path):
    """A server over a library holding one GGUF chat model, with the real llama.cpp plugin (so a chat
    request gets as far as looking its model up)."""
    llamacpp = pytest.importorskip("corral_llamacpp")
    from corral.library import open_library
    from corral.runtime import Runtime
    from corral.server.serve import ServerThread
    from corral.testing import installed_host

    with installed_host(llamacpp) as host:
        library = open_library(home, host)
        library.import_path(write_tiny_gguf(tmp_path / "s" / "gemma3-tiny.gguf"), name="gemma3")
        with ServerThread(Runtime(library)) as running:
            yield running
        library.store.close()


def test_openai_client_error_names_the_close_model(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gema3", messages=[{"role": "user", "content": "hi"}])
    assert "did you mean gemma3?" in str(caught.value)
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gemma33")
    assert "did you mean gemma3?" in str(caught.value)


def test_ollama_client_error_names_the_close_model(server):
    ollama = pytest.importorskip("ollama")

    client = ollama.Client(host=server.url)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat("gema3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404 and "did you mean gemma3?" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("gema3:latest")
    assert "did you mean gemma3?" in caught.value.error


def test_anthropic_client_error_names_the_close_model(server):
    anthropic = pytest.importorskip("anthropic")

    client = anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="gema3", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert "did you mean gemma3?" in str(caught.value)
