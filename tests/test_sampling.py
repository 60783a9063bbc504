"""The sampling parameters every text-generating driver reads through corral.sampling."""

from __future__ import annotations

import pytest

from corral.errors import InvalidSetting
from corral.sampling import read_sampling

TYPES = {"temperature": float, "top_p": float, "top_k": int, "repeat_penalty": float, "max_tokens": int,
         "logit_bias": dict}


def test_aliases_types_and_unknown_parameters():
    values, stop = read_sampling(
        {"repetition_penalty": "1.1", "max_new_tokens": 7, "top_k": "40", "temperature": 0, "mirostat": 2,
         "top_p": None, "stop": ["</s>", "", "###"], "logit_bias": {"15": -100}},
        TYPES,
    )
    assert values == {"repeat_penalty": 1.1, "max_tokens": 7, "top_k": 40, "temperature": 0.0,
                      "logit_bias": {15: -100.0}}
    assert stop == ("</s>", "###")
    assert read_sampling({"stop": "END"}, TYPES) == ({}, ("END",))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"temperature": -0.1}, "temperature cannot be negative"),
        ({"repetition_penalty": 0}, "repeat_penalty must be positive"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_k": "many"}, "top_k must be an integer"),
        ({"temperature": True}, "temperature must be a number"),
        ({"max_tokens": [3]}, "max_tokens must be an integer"),
        ({"stop": [1, 2]}, "stop must be a string or a list of strings"),
        ({"logit_bias": {"x": 1}}, "logit_bias must map token ids to numbers"),
    ],
)
def test_bad_values_are_refused_with_one_line(params, message):
    with pytest.raises(InvalidSetting, match=message):
        read_sampling(params, TYPES)


def test_saved_defaults_fill_only_what_the_request_leaves_unset():
    from corral.sampling import with_defaults

    saved = {"temperature": 0.3, "repeat_penalty": 1.2, "max_tokens": 64, "n_ctx": 512, "system_prompt": "x"}
    assert with_defaults(saved, {}) == {"temperature": 0.3, "repeat_penalty": 1.2, "max_tokens": 64}
    # The request's own values win, under any of their names; None counts as unset.
    asked = {"temperature": 0.0, "repetition_penalty": 1.0, "max_new_tokens": None}
    assert with_defaults(saved, asked) == {**asked, "max_tokens": 64}
    assert read_sampling(with_defaults(saved, asked), TYPES)[0] == {
        "temperature": 0.0, "repeat_penalty": 1.0, "max_tokens": 64}
    assert with_defaults({}, {"top_k": 5}) == {"top_k": 5}


def test_saved_system_prompt_goes_first_unless_the_chat_has_one():
    from corral.sampling import with_system_prompt

    user = [{"role": "user", "content": "Hi"}]
    assert with_system_prompt({"system_prompt": "Be brief."}, user) == [
        {"role": "system", "content": "Be brief."}, *user]
    own = [{"role": "system", "content": "Be long."}, *user]
    assert with_system_prompt({"system_prompt": "Be brief."}, own) == own
    assert with_system_prompt({}, user) == user and with_system_prompt({"system_prompt": ""}, user) == user
