"""A draft model as a component (``corral component add MODEL draft PATH``): checked against the base's
vocabulary, counted by the estimate, and used for speculative decoding, which must not change a greedy
answer. The real Gemma drafts for itself (the same vocabulary).

The question is one whose greedy answer has clear margins: checking the draft's tokens evaluates several in
one batch, whose kernels round differently from one token's, and an answer at a near tie (this small
model has many) can then flip on one build of llama.cpp and not on another."""

from __future__ import annotations

import pytest

from corral.api import ComponentKind, Incompatible, estimate_memory
from corral.testing import open_model

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
SETTINGS = {"n_ctx": 256, "threads": 1, "threads_batch": 1, "parallel": 1}


def test_a_draft_component_is_checked_counted_and_keeps_the_answer(gemma_library, gemma_path, tmp_path):
    from corral.testing import write_tiny_gguf

    library = gemma_library
    tiny = write_tiny_gguf(tmp_path / "tiny-draft.gguf")
    with pytest.raises(Incompatible, match=r"cannot draft for gemma: its vocabulary is \d+ tokens"):
        library.add_component("gemma", ComponentKind.DRAFT, tiny)

    model = library.store.get_model("gemma")
    alone = estimate_memory(model, SETTINGS)
    with open_model(library, "gemma", overrides=SETTINGS) as handle:
        plain = handle.chat(QUESTION, temperature=0, seed=0, max_tokens=32)

    drafted = library.add_component("gemma", ComponentKind.DRAFT, gemma_path)
    assert drafted.component(ComponentKind.DRAFT).size == gemma_path.stat().st_size
    grown = estimate_memory(drafted, SETTINGS)
    size = gemma_path.stat().st_size
    assert 0.9 * size < grown.total_bytes - alone.total_bytes < 1.2 * size
    assert any("draft model" in note for note in grown.notes)
    try:
        with open_model(library, "gemma", overrides=SETTINGS) as handle:
            speculative = handle.chat(QUESTION, temperature=0, seed=0, max_tokens=32)
            # llama.cpp's own timings of a request say how many tokens the draft proposed and were kept.
            timings = handle.server.handle_completions({"prompt": "1, 2, 3, 4,", "max_tokens": 16,
                                                        "temperature": 0})["timings"]
    finally:
        library.remove_component("gemma", ComponentKind.DRAFT)
    assert speculative.text == plain.text and speculative.completion_tokens == plain.completion_tokens
    assert timings["draft_n"] > 0 and timings["draft_n_accepted"] > 0
