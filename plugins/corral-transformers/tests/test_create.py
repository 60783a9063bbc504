"""`corral create` end to end: exact parameter counts, a small model written and reloaded by
transformers that generates tokens, the preview, each validation rule, and the library import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral_transformers.spec import PRESETS, ModelSpec
from corral.testing.cli import as_json, assert_clean_error

#: A tiny model: cheap to initialise and write (about 1.8M parameters).
TINY = ("--preset", "free", "--hidden-size", "128", "--layers", "2", "--heads", "4", "--kv-heads", "2",
        "--ffn-size", "256", "--vocab-size", "10000", "--context-length", "256")


def meta_count(config_dir: Path) -> int:
    """Parameters of the model transformers builds from the config.json in ``config_dir`` (no memory)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(config_dir))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --- parameter counts --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_parameter_count_is_exact(run, tmp_path, preset):
    from corral_transformers.export import llama_config

    shown = as_json(run("create", "--preset", preset, "--out", tmp_path / "m", "--dry-run", "--json"))
    spec = ModelSpec(**{a.name: shown[a.name] for a in ModelSpec.__attrs_attrs__})
    llama_config(spec).save_pretrained(str(tmp_path / "config"))
    assert shown["parameters"] == meta_count(tmp_path / "config")


@pytest.mark.parametrize("shape", [
    dict(vocab_size=10_000, hidden_size=128, layers=1, heads=1, kv_heads=1, ffn_size=128, context_length=128,
         tie_embeddings=False),
    dict(vocab_size=50_257, hidden_size=960, layers=5, heads=15, kv_heads=5, ffn_size=2560, context_length=4096,
         tie_embeddings=True),
    dict(vocab_size=100_000, hidden_size=4096, layers=3, heads=32, kv_heads=8, ffn_size=14336,
         context_length=8192, tie_embeddings=False),
])
def test_free_shape_parameter_count_is_exact(tmp_path, shape):
    from corral_transformers.export import llama_config

    spec = ModelSpec(**shape)
    llama_config(spec).save_pretrained(str(tmp_path))
    assert spec.parameters == meta_count(tmp_path)


# --- a real model, written and reloaded ----------------------------------------------------------------


def test_small_model_written_reloads_and_generates(run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny-llama"
    data = as_json(run("create", *TINY, "--out", out, "--json"))
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "generation_config.json"} <= names
    assert not [n for n in names if n.startswith(".")], "a staging folder was left behind"

    model, info = AutoModelForCausalLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == data["parameters"]
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert float(model.model.embed_tokens.weight.detach().std()) == pytest.approx(0.02, rel=0.1)  # random, not zeros

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert len(tokenizer) == 10_000 and tokenizer.model_max_length == 256
    prompt = tokenizer("Once upon a time", return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    new = generated[0, prompt["input_ids"].shape[1]:]
    assert len(new) == 6 and int(new.max()) < 10_000
    assert isinstance(tokenizer.decode(new), str)


def test_same_seed_same_weights(run, tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        as_json(run("create", *TINY, "--seed", seed, "--out", tmp_path / name, "--json"))
    weights = {name: (tmp_path / name / "model.safetensors").read_bytes() for name in "abc"}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]


def test_bf16_untied_grouped_query_model(run, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    out = tmp_path / "bf16"
    data = as_json(run("create", *TINY, "--kv-heads", "1", "--no-tie-embeddings", "--dtype", "bfloat16",
                       "--out", out, "--json"))
    assert data["file_size"] == 2 * data["parameters"]
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert "lm_head.weight" in weights.keys()
        assert weights.get_tensor("lm_head.weight").dtype == torch.bfloat16
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    assert data["model"]["facts"]["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.bfloat16)
    assert model.config.num_key_value_heads == 1 and not model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == data["parameters"]
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()


def test_exporter_api_reports_progress(host, tmp_path):
    exporter = host.exporter("hf-causal-lm")
    assert exporter is not None and exporter.check().available
    calls = []
    spec = ModelSpec(vocab_size=10_000, hidden_size=128, layers=1, heads=2, kv_heads=2, ffn_size=256,
                     context_length=128, tie_embeddings=True)
    path = exporter().export(tmp_path / "api", {"spec": spec, "seed": 3}, lambda *a: calls.append(a))
    assert path == tmp_path / "api" and (path / "model.safetensors").is_file()
    written = [(done, total) for done, total, label in calls if label == "model.safetensors"]
    assert written[-1] == (4 * spec.parameters, 4 * spec.parameters)
    assert [d for d, _ in written] == sorted(d for d, _ in written)


# --- the library ---------------------------------------------------------------------------------------


def test_written_model_is_in_the_library_as_text_generation(run, library, tmp_path):
    out = tmp_path / "lib-model"
    result = run("create", *TINY, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "Added to the library as lib-model (text-generation)" in result.stdout
    listed = as_json(run("ls", "--json"))
    assert [(m["name"], m["category"], m["format"]) for m in listed] == [("lib-model", "text-generation", "hf-dir")]
    assert Path(listed[0]["path"]) == out.resolve()
    detection = library.detect(out)
    assert (str(detection.category), detection.facts.architecture) == ("text-generation", "llama")
    assert detection.facts.parameters == as_json(run("create", *TINY, "--out", out, "--dry-run", "--json"))["parameters"]


def test_force_overwrites_files_and_keeps_one_record(run, tmp_path):
    out = tmp_path / "again"
    as_json(run("create", *TINY, "--out", out, "--json"))
    (out / "notes.txt").write_text("mine")
    before = (out / "model.safetensors").read_bytes()
    refused = run("create", *TINY, "--seed", "1", "--out", out)
    assert_clean_error(refused, str(out), "is not empty", "--force")
    assert (out / "model.safetensors").read_bytes() == before
    again = as_json(run("create", *TINY, "--seed", "1", "--out", out, "--force", "--json"))
    assert (out / "model.safetensors").read_bytes() != before
    assert (out / "notes.txt").read_text() == "mine"
    listed = as_json(run("ls", "--json"))
    assert [m["name"] for m in listed] == ["again"] and again["model"]["id"] == listed[0]["id"]


# --- preview -----------------------------------------------------------------------------------------


def test_dry_run_previews_and_writes_nothing(run, tmp_path):
    out = tmp_path / "never"
    data = as_json(run("create", "--preset", "small", "--out", out, "--dry-run", "--json"))
    p = data["parameters"]
    assert p == 100_092_672
    assert data["memory"]["weights_fp32"] == 4 * p and data["memory"]["weights_bf16"] == 2 * p
    assert data["memory"]["training"] == 16 * p
    assert "cl100k_base" in data["tokenizer"]
    text = run("create", "--preset", "small", "--out", out, "--dry-run")
    assert text.exit_code == 0 and "100,092,672" in text.stdout and "Dry run" in text.stdout
    assert not out.exists()
    assert as_json(run("ls", "--json")) == []


def test_dry_run_imports_no_torch(tmp_path):
    probe = ("import sys\nfrom corral.testing import build_cli\n"
             "try:\n    build_cli()(args=sys.argv[1:], prog_name='corral')\nexcept SystemExit:\n    pass\n"
             "print('HEAVY:' + ','.join(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules),"
             " file=sys.stderr)\n")
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home"), "CORRAL_LOAD_PLUGINS": "transformers"}
    done = subprocess.run([sys.executable, "-c", probe, "create", "--preset", "large", "--out", str(tmp_path / "x"),
                           "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert "1,100,048,384" in done.stdout, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "HEAVY:"


# --- validation: each rule rejects with its message ----------------------------------------------------


@pytest.mark.parametrize("args,fragment", [
    (("--preset", "free", "--hidden-size", "200", "--layers", "2", "--heads", "3"),
     "hidden size 200 is not divisible by 3 attention heads"),
    (("--heads", "12", "--kv-heads", "5"), "12 attention heads are not divisible by 5 KV heads"),
    (("--vocab-size", "5000"), "vocab size 5,000 is outside 10,000–100,000"),
    (("--vocab-size", "100001"), "vocab size 100,001 is outside 10,000–100,000"),
    (("--hidden-size", "64", "--heads", "1", "--kv-heads", "1"), "hidden size 64 is outside 128–8,192"),
    (("--hidden-size", "9216"), "hidden size 9,216 is outside 128–8,192"),
    (("--layers", "0"), "layers 0 is outside 1–256"),
    (("--ffn-size", "64"), "FFN size 64 is outside 128–65,536"),
    (("--context-length", "64"), "context length 64 is outside 128–131,072"),
    (("--hidden-size", "130", "--heads", "2", "--kv-heads", "1"), "head size 65"),
    (("--preset", "free", "--layers", "2"), "the free preset needs --hidden-size"),
    (("--preset", "free", "--hidden-size", "8192", "--layers", "256", "--ffn-size", "65536",
      "--vocab-size", "100000"), "memory"),
])
def test_bad_config_rejected_with_its_message(run, tmp_path, args, fragment):
    out = tmp_path / "bad"
    assert_clean_error(run("create", *args, "--out", out), fragment)
    assert not out.exists()
    assert as_json(run("ls", "--json")) == []


def test_memory_refusal_names_need_and_available(run, tmp_path):
    result = run("create", "--preset", "free", "--hidden-size", "8192", "--layers", "256", "--ffn-size", "65536",
                 "--out", tmp_path / "huge")
    assert_clean_error(result, "needs about", "TB of memory", "available")


@pytest.mark.parametrize("where,fragment", [
    ("file", "is a file, not a directory"),
    ("under-file", "no directory can be created there"),
    ("full", "is not empty"),
])
def test_output_dir_problems_rejected(run, tmp_path, where, fragment):
    blocker = tmp_path / "blocker"
    if where == "full":
        blocker.mkdir()
        (blocker / "keep.txt").write_text("x")
        out = blocker
    else:
        blocker.write_text("a file")
        out = blocker if where == "file" else blocker / "sub" / "model"
    assert_clean_error(run("create", *TINY, "--out", out), fragment)
    if where == "full":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert blocker.read_text() == "a file"


def test_unwritable_output_dir_rejected(run, tmp_path):
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        parent = locked
    elif Path("/proc/sys").is_dir():
        parent = Path("/proc/sys")  # root may write anywhere but in the kernel's own folders
    else:
        pytest.skip("running as root without /proc: no directory here refuses writes")
    try:
        assert_clean_error(run("create", *TINY, "--out", parent / "corral-model"), "cannot write in")
    finally:
        if parent != Path("/proc/sys"):
            parent.chmod(0o700)


# --- with a trained tokenizer ----------------------------------------------------------------------


def test_create_with_trained_tokenizer(run, corpus, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir = tmp_path / "tok"
    as_json(run("tokenizer", "train", corpus, "--type", "sentencepiece", "--vocab-size", "600",
                "--any-vocab-size", "--out", tok_dir, "--json"))
    small = run("create", "--preset", "free", "--hidden-size", "128", "--layers", "1", "--tokenizer", tok_dir,
                "--out", tmp_path / "m")
    assert_clean_error(small, "has 600 tokens", "--vocab-size 10000")
    assert_clean_error(run("create", "--tokenizer", tmp_path, "--out", tmp_path / "m"), "holds no tokenizer files")

    out = tmp_path / "m"
    data = as_json(run("create", "--preset", "free", "--hidden-size", "128", "--layers", "1", "--tokenizer", tok_dir,
                       "--vocab-size", "10000", "--out", out, "--json"))
    assert data["vocab_size"] == 10_000 and str(tok_dir) in data["tokenizer"]
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert len(tokenizer) == 600 and (out / "tokenizer.model").is_file()
    config = json.loads((out / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 3)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    line = "今天天气很好"
    ids = tokenizer(line, return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 4
    assert tokenizer.decode(ids["input_ids"][0]) == line


def test_killed_run_leftovers_do_not_block(run, tmp_path):
    out = tmp_path / "after-kill"
    (out / ".corral-partial-abc123").mkdir(parents=True)
    (out / ".corral-partial-abc123" / "model.safetensors").write_bytes(b"half")
    as_json(run("create", *TINY, "--out", out, "--json"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_progress_line_reports_big_files(capsys):
    from corral_transformers.commands import ProgressLine

    progress = ProgressLine(min_total=1000)
    progress(0, None, "Initialising the weights")
    for done in (0, 300, 500, 999, 1000):
        progress(done, 1000, "model.safetensors")
    progress(5, 10, "small.bin")  # under min_total: no line
    progress.finish()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Initialising the weights..."
    assert [l.split(":")[1].split("%")[0].strip() for l in lines[1:]] == ["0", "30", "50", "99", "100"]
