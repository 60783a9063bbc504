"""Reranking through the library with tiny cross-encoders built here (BERT config, random weights, a
WordPiece tokenizer trained on a few lines). Scores are checked against transformers run directly."""

from __future__ import annotations

import pytest
from st_test_models import write_trained_cross_encoder

from corral.api import Unsupported
from corral.api import CorralError, Incompatible, InvalidSetting
from corral_sentence_transformers.inputs import EmptyInput
from corral.testing import open_model

QUERY = "where does the cat sit"
DOCUMENTS = [
    "a cat sits on the mat",
    "stock prices fell sharply today",
    "a kitten rests on a rug",
    "rain is expected over the weekend",
    "the recipe needs two eggs and some flour",
]


@pytest.fixture
def reranker(library, cross_encoder_dir):
    return library.import_path(cross_encoder_dir, name="reranker").model


def direct_scores(folder, query, documents, labels=1):
    """Each (query, document) scored by transformers itself, one pair at a time, without sentence-transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    scores = []
    with torch.no_grad():
        for doc in documents:
            logits = model(**tokenizer(query, doc, return_tensors="pt")).logits[0]
            scores.append(float(torch.sigmoid(logits[0]) if labels == 1 else torch.softmax(logits, -1)[1]))
    return scores


def test_cross_encoder_imports_as_rerank_and_scores_every_document(library, reranker, cross_encoder_dir):
    assert str(reranker.category) == "rerank"
    with open_model(library, "reranker") as handle:
        ranked = handle.rerank(QUERY, DOCUMENTS)
        assert handle.memory()["ram"] > 0
    assert len(ranked) == len(DOCUMENTS)
    assert sorted(i for i, _ in ranked) == list(range(len(DOCUMENTS)))
    assert all(isinstance(i, int) and isinstance(s, float) for i, s in ranked)
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    expected = direct_scores(cross_encoder_dir, QUERY, DOCUMENTS)
    for index, score in ranked:
        assert score == pytest.approx(expected[index], abs=1e-5)
    assert max(expected) - min(expected) > 1e-3  # distinct scores: the order above means something


def test_scores_follow_the_documents_when_they_are_reordered(library, reranker):
    with open_model(library, "reranker") as handle:
        forward = {DOCUMENTS[i]: s for i, s in handle.rerank(QUERY, DOCUMENTS)}
        shuffled = DOCUMENTS[::-1]
        backward = {shuffled[i]: s for i, s in handle.rerank(QUERY, shuffled, batch_size=2)}
    assert forward.keys() == backward.keys()
    for doc, score in forward.items():
        assert backward[doc] == pytest.approx(score, abs=1e-5)


def test_top_n(library, reranker):
    with open_model(library, "reranker") as handle:
        everything = handle.rerank(QUERY, DOCUMENTS)
        assert handle.rerank(QUERY, DOCUMENTS, top_n=2) == everything[:2]
        assert handle.rerank(QUERY, DOCUMENTS, top_n=50) == everything
        with pytest.raises(InvalidSetting, match="top_n must be at least 1"):
            handle.rerank(QUERY, DOCUMENTS, top_n=0)


def test_two_label_cross_encoder_scores_the_relevant_label(library, tmp_path):
    folder = write_trained_cross_encoder(tmp_path / "two-labels", labels=2, seed=3)
    library.import_path(folder, name="two")
    with open_model(library, "two") as handle:
        ranked = handle.rerank(QUERY, DOCUMENTS)
    expected = direct_scores(folder, QUERY, DOCUMENTS, labels=2)
    assert {i: pytest.approx(expected[i], abs=1e-5) for i in range(len(DOCUMENTS))} == dict(ranked)


def test_many_label_classifier_is_not_a_reranker(library, tmp_path):
    library.import_path(write_trained_cross_encoder(tmp_path / "nli", labels=3), name="nli")
    with pytest.raises(Unsupported, match="3 labels, not a reranker"):
        with open_model(library, "nli"):
            pass


def test_max_seq_length_setting_reaches_the_cross_encoder(library, reranker):
    library.update_settings("reranker", {"max_seq_length": 16})
    with open_model(library, "reranker") as handle:
        assert handle.cross_encoder.max_seq_length == 16
        long_doc = " ".join(DOCUMENTS * 4)  # far past 64 positions: truncation keeps it working
        assert len(handle.rerank(QUERY, [long_doc, DOCUMENTS[0]])) == 2


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, documents, error, message", [
    ("", DOCUMENTS, EmptyInput, "the query is empty"),
    ("   ", DOCUMENTS, EmptyInput, "the query is empty"),
    (QUERY, [], EmptyInput, "no documents to rerank"),
    (QUERY, ["fine", None], CorralError, "document 1 is a NoneType, not text"),
])
def test_bad_rerank_input(library, reranker, query, documents, error, message):
    with open_model(library, "reranker") as handle:
        with pytest.raises(error, match=message):
            handle.rerank(query, documents)


def test_reranker_cannot_embed(library, reranker):
    with open_model(library, "reranker") as handle:
        with pytest.raises(Unsupported, match="'reranker' is a rerank .* cannot embed"):
            handle.embed(["text"])


def test_embedding_model_imported_as_rerank_is_refused_at_load(library, minilm_path):
    library.import_path(minilm_path, name="forced", category=library.detect(minilm_path).category.RERANK)
    with pytest.raises(Incompatible, match="not a cross-encoder .*BertModel"):
        with open_model(library, "forced"):
            pass


def test_equal_scores_keep_the_documents_order(library, tmp_path):
    """The core's factory cross-encoder has all-zero weights: every pair scores sigmoid(0) = 0.5."""
    from factories import write_cross_encoder

    library.import_path(write_cross_encoder(tmp_path / "flat"), name="flat")
    with open_model(library, "flat") as handle:
        ranked = handle.rerank(QUERY, DOCUMENTS)
    assert ranked == [(i, pytest.approx(0.5)) for i in range(len(DOCUMENTS))]
