"""The transformers driver end to end on a tiny random Llama written by `corral create`: precision, seeded
and greedy generation, the chat template, streaming, stop strings, the context, device and quantization
settings, offload past a memory limit, lone weight files, remote code, and `corral chat`."""

from __future__ import annotations

import json
import shutil

import attrs
import pytest

from corral.api import Unsupported, drain
from corral.api import CorralError, DetectionError, InvalidSetting, NotFound
from corral.api import Category
from corral.testing import driver_for, open_model

PROMPT = "The quick brown fox jumps over the lazy dog. The corral"
#: Seeded sampling: a random-weight model's greedy answer repeats one token, sampling gives words.
SAMPLED = dict(temperature=1.0, top_k=0, top_p=1.0, seed=5)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# --- loading -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_loads_on_the_cpu_in_the_asked_precision(library, tiny, dtype):
    import torch

    with open_model(library, "tiny", overrides={"dtype": dtype, "device": "cpu"}) as handle:
        assert handle.lm.dtype == getattr(torch, dtype)
        assert {p.device.type for p in handle.lm.parameters()} == {"cpu"}
        answer = handle.complete(PROMPT, max_tokens=6, temperature=0)
        assert answer.completion_tokens == 6 and answer.text.strip()
        memory = handle.memory()
        assert set(memory) == {"ram", "vram"} and memory["vram"] == 0 and memory["ram"] >= 0


def test_driver_is_chosen_and_declares_its_settings(library, tiny, run):
    assert driver_for(library.host, tiny).name == "transformers"
    result = run("settings", "tiny", "--set", "quantization=nf4", "--set", "max_memory=0=20GiB,cpu=8GiB",
                 "--set", "device_map=auto", "--set", "dtype=bfloat16")
    assert result.exit_code == 0, result.output
    saved = library.store.get_model("tiny").settings
    assert saved["quantization"] == "nf4" and saved["device_map"] == "auto" and saved["dtype"] == "bfloat16"
    bad = run("settings", "tiny", "--set", "quantization=int3")
    assert bad.exit_code != 0 and "quantization must be one of none, int8, int4, nf4" in bad.stderr


# --- generation ------------------------------------------------------------------------------------------


def test_a_seed_makes_sampling_repeat(library, tiny):
    with open_model(library, "tiny", overrides={"dtype": "float32"}) as handle:
        sample = dict(temperature=1.0, top_k=0, top_p=1.0, max_tokens=16)
        first = handle.complete(PROMPT, seed=7, **sample)
        again = handle.complete(PROMPT, seed=7, **sample)
        other = handle.complete(PROMPT, seed=8, **sample)
        assert first == again
        assert first.completion_tokens == 16
        assert other.text != first.text  # random weights: near-uniform choices, 16 of them
        greedy = [handle.complete(PROMPT, temperature=0, max_tokens=12).text for _ in range(2)]
        assert greedy[0] == greedy[1]


def test_the_seed_setting_seeds_every_request(library, tiny):
    sample = dict(temperature=1.0, top_k=0, max_tokens=12)
    with open_model(library, "tiny", overrides={"seed": 3}) as handle:
        assert handle.complete(PROMPT, **sample) == handle.complete(PROMPT, **sample)
        assert handle.complete(PROMPT, seed=3, **sample) == handle.complete(PROMPT, **sample)


def test_streaming_yields_the_same_text_in_pieces(library, tiny):
    with open_model(library, "tiny") as handle:
        whole = handle.complete(PROMPT, max_tokens=24, **SAMPLED)
        pieces, ended = drain(handle.complete(PROMPT, max_tokens=24, stream=True, **SAMPLED))
        assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == whole.text
        # The stream ends with the same finish reason and token counts as the whole answer.
        assert whole.finish_reason == "length" and whole.completion_tokens == 24
        assert ended == attrs.evolve(whole, text="")
        # A reader that stops early ends the generation; the model answers the next request normally.
        stream = handle.complete(PROMPT, max_tokens=200, stream=True, **SAMPLED)
        next(stream)
        stream.close()
        assert handle.complete(PROMPT, max_tokens=24, **SAMPLED) == whole


def test_stop_strings_end_the_answer_before_them(library, tiny):
    with open_model(library, "tiny") as handle:
        whole = handle.complete(PROMPT, max_tokens=24, **SAMPLED).text
        words = whole.split()
        assert len(words) > 3, whole
        stop = words[2]
        cut = whole[: whole.index(stop)]
        answer = handle.complete(PROMPT, max_tokens=24, stop=[stop, "never-there"], **SAMPLED)
        assert answer.text == cut and answer.finish_reason == "stop"
        assert answer.completion_tokens < 24  # generation ended at the stop string, not at max_tokens
        streamed = list(handle.complete(PROMPT, max_tokens=24, stop=stop, stream=True, **SAMPLED))
        assert "".join(streamed) == cut


def test_max_tokens_context_and_finish_reason(library, tiny):
    with open_model(library, "tiny", overrides={"n_ctx": 40}) as handle:
        assert handle.context_length == 40
        answer = handle.complete(PROMPT, temperature=0, max_tokens=5)
        assert (answer.completion_tokens, answer.finish_reason) == (5, "length")
        assert answer.prompt_tokens == len(handle.tokenizer(PROMPT)["input_ids"])
        # Unset max_tokens runs to the end of the context.
        rest = handle.complete(PROMPT, temperature=0)
        assert rest.prompt_tokens + rest.completion_tokens == 40 and rest.finish_reason == "length"
        with pytest.raises(CorralError, match=r"the prompt is \d+ tokens but the context holds 40; .*--n-ctx"):
            handle.complete(PROMPT * 4, max_tokens=4)


def test_bad_request_parameters_are_refused(library, tiny):
    with open_model(library, "tiny") as handle:
        with pytest.raises(InvalidSetting, match="temperature cannot be negative"):
            handle.complete(PROMPT, temperature=-1)
        with pytest.raises(InvalidSetting, match="top_k must be an integer"):
            handle.complete(PROMPT, top_k="many")
        with pytest.raises(InvalidSetting, match="stop must be a string or a list of strings"):
            handle.complete(PROMPT, stop=3)
        # Names other backends have and transformers lacks are ignored; the aliases work.
        answer = handle.complete(PROMPT, temperature=0, max_new_tokens=3, repetition_penalty=1.3, mirostat=2)
        assert answer.completion_tokens == 3


# --- chat --------------------------------------------------------------------------------------------------


def test_chat_applies_the_tokenizers_template(library, tiny_chat):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    with open_model(library, "tiny-chat") as handle:
        bos = handle.tokenizer.bos_token
        assert handle.render(messages) == f"{bos}<|system|>\nBe brief.<|end|>\n<|user|>\nHello there<|end|>\n<|assistant|>\n"
        answer = handle.chat(messages, temperature=0, max_tokens=8)
        # The rendered prompt goes in as is (its BOS is the template's, none is added on top).
        ids = handle.tokenizer(handle.render(messages), add_special_tokens=False)["input_ids"]
        assert answer.prompt_tokens == len(ids) and ids[0] == handle.tokenizer.bos_token_id and ids[1] != ids[0]
        assert answer.completion_tokens == 8
        raw = handle.complete(handle.render(messages)[len(bos):], temperature=0, max_tokens=8)
        assert raw.text == answer.text  # the same prompt as a completion (BOS added by the tokenizer)
        parts = [{"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}]
        assert handle.render(parts) == handle.render(messages[1:])
        with pytest.raises(Unsupported, match="text model; it cannot read image_url parts"):
            handle.chat([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])
        with pytest.raises(CorralError, match="at least one message"):
            handle.chat([])


def test_saved_system_prompt_and_sampling_defaults_apply(library, tiny_chat):
    library.update_settings("tiny-chat", {"system_prompt": "Be brief.", "max_tokens": 5, "temperature": 0})
    hello = [{"role": "user", "content": "Hello there"}]
    briefed = [{"role": "system", "content": "Be brief."}, *hello]
    with open_model(library, "tiny-chat") as handle:
        told = handle.chat(hello)  # no request parameters: the saved ones
        assert told.prompt_tokens == len(handle.tokenizer(handle.render(briefed), add_special_tokens=False)["input_ids"])
        assert told.completion_tokens == 5 and told.text == handle.chat(briefed, temperature=0, max_tokens=5).text
        longer = [{"role": "system", "content": "Answer at length, please."}, *hello]
        own = handle.chat(longer, max_tokens=2)  # the chat's own system message and max_tokens win
        assert own.completion_tokens == 2
        assert own.prompt_tokens == len(handle.tokenizer(handle.render(longer), add_special_tokens=False)["input_ids"])


def test_chat_without_a_template_is_refused_clearly(library, tiny):
    with open_model(library, "tiny") as handle:
        with pytest.raises(Unsupported, match=r"tiny: its tokenizer has no chat template.*corral settings tiny --set chat_template="):
            handle.chat([{"role": "user", "content": "Hi"}])
        assert handle.complete(PROMPT, max_tokens=2).completion_tokens == 2  # completion still works


def test_the_chat_template_setting_replaces_the_tokenizers(library, tiny, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    for value in (str(template), template.read_text()):
        with open_model(library, "tiny", overrides={"chat_template": value}) as handle:
            assert handle.render([{"role": "user", "content": "Hi"}]) == "user: Hi\nassistant:"
            assert handle.chat([{"role": "user", "content": "Hi"}], max_tokens=3).completion_tokens == 3
    broken = "{% for m in messages %}{{ raise_exception('no ' + m['role'] + ' here') }}{% endfor %}"
    with open_model(library, "tiny", overrides={"chat_template": broken}) as handle:
        with pytest.raises(CorralError, match=r"the chat_template setting could not render these messages \(no user here\)"):
            handle.chat([{"role": "user", "content": "Hi"}])


def test_corral_chat_through_the_cli(run, library, tiny_chat):
    result = run("chat", "tiny-chat", "Hello there", "--max-tokens", "6", "--seed", "1", "--temperature", "0.9")
    assert result.exit_code == 0, result.output
    again = run("chat", "tiny-chat", "Hello there", "--max-tokens", "6", "--seed", "1", "--temperature", "0.9")
    assert result.stdout.strip() and result.stdout == again.stdout
    with open_model(library, "tiny-chat") as handle:
        expected = handle.chat([{"role": "user", "content": "Hello there"}], max_tokens=6, seed=1, temperature=0.9)
    assert result.stdout == expected.text + "\n"


def test_corral_chat_refuses_a_model_without_template_in_one_line(run, library, tiny):
    result = run("chat", "tiny", "Hi", "--max-tokens", "2")
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.startswith("Error: tiny: its tokenizer has no chat template")
    assert len(result.stderr.strip().splitlines()) == 1


# --- devices, quantization, offload ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["int8", "int4", "nf4"])
def test_quantization_without_cuda_is_refused(library, tiny, kind):
    if cuda_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(InvalidSetting) as caught:
        with open_model(library, "tiny", overrides={"quantization": kind}):
            pass
    assert str(caught.value).startswith(f"tiny: quantization={kind} uses bitsandbytes, which needs an NVIDIA GPU")
    assert "corral settings tiny --unset quantization" in str(caught.value)
    assert "tiny" not in {m.name for m in library.store.list_models() if m.id in library.store.loaded_ids()}


@pytest.mark.parametrize("kind,four_bit", [("int8", None), ("int4", "fp4"), ("nf4", "nf4")])
def test_quantization_settings_become_bitsandbytes_arguments(tiny, monkeypatch, kind, four_bit):
    """What a CUDA machine would pass to from_pretrained (this one has no GPU, so torch is told it has one:
    only the translation of the settings is checked here, not bitsandbytes itself)."""
    import importlib.util

    import torch

    from corral_transformers.options import load_options

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "bitsandbytes" else real_find_spec(name, *a))
    options = load_options(tiny, {"quantization": kind, "double_quant": True}, transformers_5=True)
    config = options.kwargs["quantization_config"]
    assert options.kwargs["device_map"] == {"": "cuda"} and options.device == "cuda"
    if four_bit is None:
        assert config.load_in_8bit and not config.load_in_4bit
    else:
        assert config.load_in_4bit and config.bnb_4bit_quant_type == four_bit
        assert config.bnb_4bit_compute_dtype == torch.bfloat16 and config.bnb_4bit_use_double_quant
    with pytest.raises(InvalidSetting, match=f"quantization={kind} runs on a CUDA GPU, not device=cpu"):
        load_options(tiny, {"quantization": kind, "device": "cpu"}, transformers_5=True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    spread = load_options(tiny, {"dtype": "bfloat16", "max_memory": "0=10GiB,1=12GiB,cpu=30GiB"}, transformers_5=True)
    assert spread.kwargs["device_map"] == "auto" and spread.kwargs["dtype"] == torch.bfloat16
    assert spread.kwargs["max_memory"] == {0: "10GiB", 1: "12GiB", "cpu": "30GiB"}
    assert load_options(tiny, {}, transformers_5=True).kwargs["device_map"] == "auto"  # every GPU


def test_a_missing_gpu_is_refused_with_the_fix(library, tiny):
    if cuda_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(InvalidSetting, match=r"tiny: device=cuda:1 but torch .* sees no CUDA GPU; corral settings tiny --set device=cpu"):
        with open_model(library, "tiny", overrides={"device": "cuda:1"}):
            pass
    with pytest.raises(InvalidSetting, match="device 'gpu' is not auto, cpu, cuda, cuda:N or mps"):
        with open_model(library, "tiny", overrides={"device": "gpu"}):
            pass
    with pytest.raises(InvalidSetting, match="max_memory entry 'cpu:4GB' is not DEVICE=SIZE"):
        with open_model(library, "tiny", overrides={"max_memory": "cpu:4GB"}):
            pass


def test_weights_past_the_memory_limit_are_offloaded_and_answer_the_same(library, tiny, tmp_path):
    with open_model(library, "tiny") as handle:
        expected = handle.complete(PROMPT, temperature=0, max_tokens=10)
    offload = {"max_memory": "cpu=3MB", "offload_folder": str(tmp_path / "offload")}
    with open_model(library, "tiny", overrides=offload) as handle:
        placed = set(handle.lm.hf_device_map.values())
        assert "disk" in placed  # 6 MB of weights, 3 MB allowed in RAM
        assert handle.complete(PROMPT, temperature=0, max_tokens=10).text == expected.text


# --- other layouts -----------------------------------------------------------------------------------------


def test_a_lone_weight_file_loads_with_the_config_beside_it(library, tiny_dir, tmp_path):
    with open_model(library, library.import_path(tiny_dir, name="folder").model.id) as handle:
        expected = handle.complete(PROMPT, temperature=0, max_tokens=8).text
    weights = tiny_dir / "model.safetensors"
    renamed = weights.with_name("tiny-llama.safetensors")
    shutil.copyfile(weights, renamed)
    # A file inside an imported folder is a second record only when asked for (a duplicate otherwise).
    model = library.import_path(renamed, name="lone", category=Category.TEXT_GENERATION, as_variant=True).model
    assert model.format.value == "safetensors" and driver_for(library.host, model).name == "transformers"
    with open_model(library, "lone", overrides={"dtype": "float32"}) as handle:
        assert handle.complete(PROMPT, temperature=0, max_tokens=8).text == expected
    alone = tmp_path / "alone" / "tiny.safetensors"
    alone.parent.mkdir()
    shutil.copyfile(weights, alone)
    model = library.import_path(alone, name="alone", category=Category.TEXT_GENERATION, as_variant=True).model
    with pytest.raises(DetectionError, match=r"tiny.safetensors: a lone weight file carries no config.json"):
        with open_model(library, model.id):
            pass


def test_a_model_in_the_hugging_face_cache_loads_offline(library, tiny, tiny_dir, tmp_path, monkeypatch):
    import attrs
    from transformers_factories import write_hf_cache

    from corral.testing import scan

    with open_model(library, "tiny") as handle:
        expected = handle.complete(PROMPT, temperature=0, max_tokens=8).text
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = write_hf_cache(tmp_path / "hub", "corral-tests/tiny-llama", tiny_dir)
    adopted = [e for e in scan(library, layout="hf-cache") if e.status == "added"]
    assert len(adopted) == 1 and adopted[0].path == snapshot
    model = library.store.find_model_by_path(snapshot)
    assert model.provenance.repo == "corral-tests/tiny-llama"
    with open_model(library, model.id) as handle:
        assert handle.complete(PROMPT, temperature=0, max_tokens=8).text == expected
    # The recorded folder is gone, but the cache still holds the revision: it loads from there.
    moved = attrs.evolve(model, path=tmp_path / "gone" / "tiny-llama", paths=())
    handle = driver_for(library.host, moved)().load(moved, {}, ())
    try:
        assert handle.complete(PROMPT, temperature=0, max_tokens=8).text == expected
    finally:
        handle.unload()
    elsewhere = attrs.evolve(moved, provenance=attrs.evolve(model.provenance, repo="corral-tests/other"))
    with pytest.raises(NotFound, match=r"tiny-llama: the files of .* are gone; if they moved: corral edit .* --path NEW_PATH, else re-import"):
        driver_for(library.host, moved)().load(elsewhere, {}, ())


def test_remote_code_runs_only_when_allowed(library, tiny_dir, tmp_path):
    marker = tmp_path / "remote-code-ran"
    config = json.loads((tiny_dir / "config.json").read_text())
    config.update(model_type="corral_tiny", architectures=["TinyForCausalLM"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyConfig",
                            "AutoModelForCausalLM": "modeling_tiny.TinyForCausalLM"})
    (tiny_dir / "config.json").write_text(json.dumps(config))
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nfrom transformers import LlamaConfig\n"
    (tiny_dir / "configuration_tiny.py").write_text(code + "class TinyConfig(LlamaConfig):\n    model_type = 'corral_tiny'\n")
    (tiny_dir / "modeling_tiny.py").write_text(code)
    model = library.import_path(tiny_dir, name="remote", category=Category.TEXT_GENERATION).model
    with pytest.raises(InvalidSetting) as caught:
        with open_model(library, model.id):
            pass
    message = str(caught.value)
    assert "ships its own Python code" in message and "corral settings remote --set trust_remote_code=true" in message
    assert "runs the .py files in the model folder" in message
    assert not marker.exists()
