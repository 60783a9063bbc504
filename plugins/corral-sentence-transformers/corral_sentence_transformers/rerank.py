"""Rerank models: a sentence-transformers ``CrossEncoder`` behind :meth:`LoadedModel.rerank`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, Unsupported, free_torch_memory, torch_memory, torch_threads
from corral.api import CorralError, Incompatible
from corral.api import Model
from corral_sentence_transformers.inputs import int_param, query_and_documents
from corral_sentence_transformers.loading import (
    Options,
    check_files,
    check_max_seq_length,
    config_of,
    load_error,
    model_folder,
    offline_and_quiet,
    resolve_device,
    torch_dtype,
)


class RerankModel(LoadedModel):
    """A loaded cross-encoder: scores each (query, document) pair jointly."""

    def __init__(self, model: Model, settings: Mapping[str, Any], cross_encoder: Any, options: Options) -> None:
        super().__init__(model, settings)
        self.cross_encoder = cross_encoder
        self.options = options
        self.labels: int = cross_encoder.num_labels
        self._memory = torch_memory(cross_encoder)

    def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None,
               **params: Any) -> list[tuple[int, float]]:
        """Score every document against ``query``; ``(index, score)`` pairs, best first.

        ``index`` is the document's position in ``documents``; equal scores keep the documents' order.
        Scores are the model's relevance: a sigmoid of its one logit (0..1) for the usual one-label
        cross-encoder, the probability of the "relevant" label for a two-label one.

        :param top_n: keep only the best N (``None``: all; more than there are documents: all).
        :param params: ``batch_size`` (pairs per forward pass; default the ``batch_size`` setting, 32).
            Other params are ignored.
        :raises EmptyInput: an empty query or no documents.
        :raises InvalidSetting: ``top_n`` or ``batch_size`` below 1.
        """
        name = self.model.name
        documents = query_and_documents(name, query, documents)
        top_n = int_param(name, {"top_n": top_n}, "top_n", None)
        batch_size = int_param(name, params, "batch_size", self.options.batch_size)
        pairs = [(query, doc) for doc in documents]
        try:
            if self.labels == 2:
                scores = self.cross_encoder.predict(pairs, batch_size=batch_size, apply_softmax=True,
                                                    show_progress_bar=False)[:, 1]
            else:
                scores = self.cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        except CorralError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:300]
            raise CorralError(f"{name}: reranking failed ({type(exc).__name__}: {text})") from exc
        scores = [float(s) for s in scores.reshape(-1).tolist()]
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return [(i, scores[i]) for i in order[:top_n]]

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        raise Unsupported(f"model {self.model.name!r} is a rerank (cross-encoder) model and cannot embed; "
                          "it scores query-document pairs: use rerank, or an embedding model for vectors")

    def memory(self) -> dict[str, int]:
        return dict(self._memory)

    def unload(self) -> None:
        self.cross_encoder = None
        free_torch_memory()


def load_reranker(model: Model, settings: Mapping[str, Any]) -> RerankModel:
    """Load ``model`` as a ``CrossEncoder``; refuse a folder with no classification head to score with."""
    torch_threads(settings)
    options = Options.read(model, settings)
    check_files(model)
    device = resolve_device(model, options.device)
    check_max_seq_length(model, options, model.facts.context_length)
    with model_folder(model) as folder:
        archs = [a for a in config_of(folder).get("architectures") or () if isinstance(a, str)]
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            # CrossEncoder would bolt a randomly initialised head onto it and return noise as scores.
            raise Incompatible(f"{model.name}: {folder} is not a cross-encoder (config.json architectures: "
                               f"{', '.join(archs) or 'none'}, no ...ForSequenceClassification head); "
                               "a rerank model scores query-document pairs; import it as embedding if it "
                               "makes vectors")
        with offline_and_quiet():
            from sentence_transformers import CrossEncoder

            try:
                cross_encoder = CrossEncoder(
                    str(folder),
                    device=device,
                    local_files_only=True,
                    trust_remote_code=options.trust_remote_code,
                    model_kwargs={"dtype": torch_dtype(options.dtype)},
                    max_length=options.max_seq_length,
                )
            except CorralError:
                raise
            except Exception as exc:
                raise load_error(model, folder, exc) from exc
    handle = RerankModel(model, settings, cross_encoder, options)
    if handle.labels not in (1, 2):
        handle.unload()
        raise Unsupported(f"{model.name}: a classifier with {handle.labels} labels, not a reranker (one "
                          "relevance score, or two labels: irrelevant/relevant)")
    return handle
