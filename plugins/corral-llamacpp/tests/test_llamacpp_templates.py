"""Chat templates: which one a model gets, how the built-ins render, and the sandbox around them."""

from __future__ import annotations

import pytest

from corral.api import CorralError, InvalidSetting
from corral_llamacpp.templates import BUILTINS, Renderer, choose_template, stops_in

GEMMA_TURNS = "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def choose(arch=None, embedded=None, override=None, tokens=()):
    return choose_template(
        override=override, embedded=embedded, architecture=arch, has_special_token=lambda t: t in tokens,
        model_name="m",
    )


def render(name_or_template, messages, **kw):
    template = choose(override=name_or_template) if name_or_template in BUILTINS else name_or_template
    return Renderer(template, bos_token="<bos>", eos_token="<eos>", model_name="m").render(messages, **kw)


@pytest.mark.parametrize(
    "arch, tokens, expected",
    [
        ("gemma3", (), "gemma"),
        ("gemma2", (), "gemma"),
        ("qwen2", (), "chatml"),
        ("qwen3", (), "chatml"),
        ("llama", ("<|start_header_id|>", "<|eot_id|>"), "llama3"),
        ("llama", ("<|im_start|>", "<|im_end|>"), "chatml"),
        ("llama", ("[INST]", "[/INST]"), "mistral"),
        ("phi3", ("<|user|>", "<|end|>"), "phi3"),
        ("phi3", ("<|im_start|>", "<|im_sep|>", "<|im_end|>"), "phi4"),
        ("llama", (), "llama2"),
        ("somethingnew", (), "chatml"),
    ],
)
def test_builtin_chosen_by_architecture_then_vocabulary(arch, tokens, expected):
    chosen = choose(arch, tokens=tokens)
    assert chosen.name == expected
    assert chosen.source == BUILTINS[expected].source


def test_embedded_template_wins_over_architecture_and_user_override_wins_over_both():
    embedded = "{{ messages[0]['content'] }}"
    assert choose("gemma3", embedded=embedded).name == "gguf"
    assert choose("gemma3", embedded=embedded).origin == "the GGUF's tokenizer.chat_template"
    assert choose("gemma3", embedded=embedded, override="chatml").name == "chatml"
    custom = choose("gemma3", embedded=embedded, override="{{ 'x' }}")
    assert (custom.name, custom.source) == ("custom", "{{ 'x' }}")


def test_override_that_is_not_jinja_is_refused_with_the_setting_named():
    with pytest.raises(InvalidSetting, match="chat_template setting is not a valid Jinja template"):
        choose(override="{% for m in messages %}")


def test_gemma_renders_turns_with_system_folded_into_first_user_turn():
    text = render("gemma", [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Hi  "},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
    ])  # fmt: skip
    assert text == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    )


def test_chatml_llama3_phi3_render_their_markers():
    messages = [{"role": "user", "content": "Hi"}]
    assert render("chatml", messages) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert render("llama3", messages) == (
        "<bos><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert render("phi3", messages) == "<|user|>\nHi<|end|>\n<|assistant|>\n"
    llama2 = render("llama2", [{"role": "system", "content": "S"}, *messages])
    assert llama2 == "<bos>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]"


def test_stops_follow_the_markers_a_template_writes():
    assert stops_in(BUILTINS["gemma"].source) == ("<end_of_turn>", "<start_of_turn>")
    assert "<|im_end|>" in stops_in("{{ '<|im_start|>' + m + '<|im_end|>' }}")
    assert stops_in("{{ messages }}") == ()
    embedded = choose("gemma3", embedded=BUILTINS["gemma"].source)
    assert embedded.stops == ("<end_of_turn>", "<start_of_turn>")


def test_template_refusal_is_a_corral_error():
    template = choose(override="{{ raise_exception('roles must alternate') }}")
    with pytest.raises(CorralError, match="refused the conversation: roles must alternate"):
        render(template, [{"role": "user", "content": "x"}])


def test_sandbox_stops_a_hostile_template():
    # A model file's template reaching for Python internals (the classic SSTI escape) must not run.
    hostile = choose(override="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(CorralError, match="unsafe|failed on this conversation"):
        render(hostile, [{"role": "user", "content": "x"}])
    mutate = choose(override="{{ messages.append({'role': 'user'}) }}")
    with pytest.raises(CorralError, match="unsafe"):
        render(mutate, [{"role": "user", "content": "x"}])


def test_hf_template_features_render():
    template = choose(override=(
        "{% for m in messages %}{% if m['role'] == 'skip' %}{% continue %}{% endif %}"
        "{% generation %}{{ m['content'] | tojson }}{% endgeneration %}{% endfor %}{{ strftime_now('%Y')[:2] }}"
    ))  # fmt: skip
    out = render(template, [{"role": "skip", "content": "no"}, {"role": "user", "content": "é"}])
    assert out == '"é"20'
