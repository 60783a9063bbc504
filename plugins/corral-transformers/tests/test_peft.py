"""PEFT LoRA adapters through Corral: built with peft in the test, bound with `corral lora add`, applied
several at once with weights. Weight 0 is exactly the base model, a weight scales its adapter's delta,
deltas add up, and the result matches peft's own; adapters for another shape are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers_factories import build_adapter

from corral.api import Incompatible
from corral.api import Lora
from corral.testing import open_model

PROMPT = "The quick brown fox jumps over the lazy dog"


@pytest.fixture
def adapters(tiny_dir, tmp_path) -> tuple[Path, Path]:
    return (build_adapter(tiny_dir, tmp_path / "lora-a", seed=1),
            build_adapter(tiny_dir, tmp_path / "lora-b", seed=2, rank=8))


@pytest.fixture
def bound(library, tiny, adapters):
    """The tiny model with both adapters bound to it (``a`` and ``b``)."""
    a = library.add_lora("tiny", adapters[0], name="a")
    b = library.add_lora("tiny", adapters[1], name="b")
    return a, b


def logits(handle):
    import torch

    ids = handle.tokenizer(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        return handle.lm(**ids).logits.float()


def first_q_proj(handle):
    """Layer 0's q_proj output for the prompt: LoRA's delta there is linear in each adapter's weight."""
    import torch

    out = {}
    module = handle.lm.get_submodule("model.layers.0.self_attn.q_proj")
    hook = module.register_forward_hook(lambda _m, _i, output: out.setdefault("q", output.detach().clone()))
    try:
        logits(handle)
    finally:
        hook.remove()
    return out["q"].to(torch.float32)


def run_with(library, loras, probe=logits):
    with open_model(library, "tiny", loras=loras, overrides={"dtype": "float32"}) as handle:
        return probe(handle)


def test_adapters_with_weights_change_the_logits_and_zero_is_none(library, bound):
    import torch

    base = run_with(library, [])
    one = run_with(library, ["a=1"])
    both = run_with(library, ["a=1", "b=0.5"])
    zero = run_with(library, ["a=0", "b=0"])
    assert not torch.allclose(one, base, atol=1e-3)
    assert not torch.allclose(both, one, atol=1e-3)
    assert torch.equal(zero, base)  # weight 0: exactly the base model


def test_a_weight_scales_the_delta_and_deltas_add_up(library, bound):
    import torch

    base = run_with(library, [], first_q_proj)
    a_full = run_with(library, ["a"], first_q_proj) - base  # the record's default weight, 1
    a_half = run_with(library, ["a=0.5"], first_q_proj) - base
    a_neg = run_with(library, ["a=-2"], first_q_proj) - base
    b_full = run_with(library, ["b=1"], first_q_proj) - base
    both = run_with(library, ["a=1", "b=1"], first_q_proj) - base
    assert a_full.abs().max() > 1e-3 and b_full.abs().max() > 1e-3
    assert torch.allclose(a_half, 0.5 * a_full, atol=1e-5)
    assert torch.allclose(a_neg, -2 * a_full, atol=1e-5)
    assert torch.allclose(both, a_full + b_full, atol=1e-5)


def test_the_result_matches_peft_itself(library, bound, tiny_dir, adapters):
    import torch
    import warnings

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ours = run_with(library, ["a=1", "b=1"])
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir), local_files_only=True, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations inside peft
        reference = PeftModel.from_pretrained(base, str(adapters[0]), adapter_name="a")
    reference.load_adapter(str(adapters[1]), adapter_name="b")
    reference.base_model.set_adapter(["a", "b"])
    ids = AutoTokenizer.from_pretrained(str(tiny_dir))(PROMPT, return_tensors="pt")
    with torch.inference_mode():
        expected = reference(**ids).logits.float()
    assert torch.allclose(ours, expected, atol=1e-5)


def test_loaded_adapters_are_reported(library, bound):
    with open_model(library, "tiny", loras=["a=0.7", "b=0"]) as handle:
        assert [(a.lora.name, a.weight) for a in handle.adapters] == [("a", 0.7)]  # b: checked, not applied
        assert [(r.lora.name, r.weight) for r in handle.loras] == [("a", 0.7), ("b", 0.0)]
        assert handle.complete(PROMPT, temperature=0, max_tokens=3).completion_tokens == 3


def test_corral_chat_with_loras_through_the_cli(run, library, tiny_chat, adapters):
    assert run("lora", "add", "tiny-chat", adapters[0], "--name", "a").exit_code == 0
    assert run("lora", "add", "tiny-chat", adapters[1], "--name", "b").exit_code == 0
    plain = run("chat", "tiny-chat", "Hello", "--max-tokens", "12", "--temperature", "0")
    adapted = run("chat", "tiny-chat", "Hello", "--max-tokens", "12", "--temperature", "0",
                  "--lora", "a=1", "--lora", "b=0.5")
    off = run("chat", "tiny-chat", "Hello", "--max-tokens", "12", "--temperature", "0", "--lora", "a=0")
    assert plain.exit_code == adapted.exit_code == off.exit_code == 0, adapted.output
    assert off.stdout == plain.stdout
    assert adapted.stdout.strip()


def test_an_adapter_for_another_shape_is_refused(library, tiny, tiny_dir, tmp_path):
    from transformers import LlamaConfig

    wide = LlamaConfig(vocab_size=10000, hidden_size=256, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)
    other = build_adapter(tiny_dir, tmp_path / "wide-lora", seed=3, config=wide)
    with pytest.raises(Incompatible, match=r"does not fit base tiny-llama: .*q_proj.weight: LoRA expects 256 inputs, base has 128"):
        library.add_lora("tiny", other, name="wide")
    assert library.store.list_loras(tiny.id) == []
    # Bound anyway (the files changed after `lora add`): the load checks again, against the live model.
    good = library.add_lora("tiny", build_adapter(tiny_dir, tmp_path / "ok-lora", seed=4), name="ok")
    forced = library.store.add_lora(Lora(id="feedc0ffee00", name="wide", base_id=tiny.id, format=good.format,
                                         path=other))
    with pytest.raises(Incompatible) as caught:
        with open_model(library, "tiny", loras=["ok", forced.name]):
            pass
    message = str(caught.value)
    assert message.startswith(f"LoRA wide ({other}) does not fit tiny: ")
    assert "model.layers.0.self_attn.q_proj: LoRA expects 256 inputs, base has 128" in message
    assert "and " in message  # more mismatches than it lists


def test_an_adapter_that_is_not_a_peft_folder_is_refused(library, tiny, tmp_path, adapters):
    bound = library.add_lora("tiny", adapters[0], name="a")
    (adapters[0] / "adapter_config.json").unlink()
    with pytest.raises(Incompatible, match=r"LoRA a: .* is not a PEFT adapter folder \(no adapter_config.json\)"):
        with open_model(library, "tiny", loras=[bound.name]):
            pass
