"""Embedding models: a ``SentenceTransformer`` behind :meth:`LoadedModel.embed`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, Unsupported, free_torch_memory, torch_memory, torch_threads
from corral.api import CorralError, DetectionError
from corral.api import Format, Model
from corral_sentence_transformers.inputs import bool_param, int_param, texts_to_embed
from corral_sentence_transformers.loading import (
    Options,
    check_files,
    check_max_seq_length,
    load_error,
    model_folder,
    offline_and_quiet,
    resolve_device,
    torch_dtype,
)


class EmbeddingModel(LoadedModel):
    """A loaded embedding model. ``dimensions`` is the length of every vector it returns."""

    def __init__(self, model: Model, settings: Mapping[str, Any], encoder: Any, options: Options) -> None:
        super().__init__(model, settings)
        self.encoder = encoder
        self.options = options
        self.dimensions: int = _width(encoder, "get_sentence_embedding_dimension")
        self._memory = torch_memory(encoder)

    def embed(self, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """One vector per text, in the order given.

        :param texts: non-empty texts (a lone string counts as one text).
        :param params: ``batch_size`` (texts per forward pass; default the ``batch_size`` setting, 32),
            ``normalize`` (scale each vector to length 1; default the ``normalize`` setting, off; a model
            whose pipeline ends in a Normalize module returns unit vectors either way), ``dimensions``
            (keep the first N values, for Matryoshka-trained models; normalisation applies after the cut).
            Other params are ignored.
        :raises EmptyInput: no texts, or an empty one.
        :raises InvalidSetting: a param out of range.
        """
        name = self.model.name
        texts = texts_to_embed(name, texts)
        batch_size = int_param(name, params, "batch_size", self.options.batch_size)
        normalize = bool_param(name, params, "normalize", self.options.normalize)
        dimensions = int_param(name, params, "dimensions", None, maximum=self.dimensions)
        try:
            vectors = self.encoder.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=normalize,
                truncate_dim=dimensions,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        except CorralError:
            raise
        except Exception as exc:
            raise _run_error(name, exc) from exc
        return vectors.tolist()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model reads them: its own tokenizer, special tokens included, cut at
        its ``max_seq_length`` as encoding cuts them."""
        texts = texts_to_embed(self.model.name, texts)
        tokenize = getattr(self.encoder, "preprocess", None) or self.encoder.tokenize  # renamed in 5.x
        features = tokenize(list(texts))
        mask = features.get("attention_mask")
        if mask is None:
            return [len(ids) for ids in features["input_ids"]]
        return [int(row.sum()) for row in mask]

    def rerank(self, query: str, documents: Sequence[str], **params: Any) -> list[tuple[int, float]]:
        raise Unsupported(f"model {self.model.name!r} is an embedding model and cannot rerank; use a rerank "
                          "(cross-encoder) model, or compare this model's embeddings by cosine")

    def memory(self) -> dict[str, int]:
        return dict(self._memory)

    def unload(self) -> None:
        self.encoder = None
        free_torch_memory()


def _width_detected_now(model: Model) -> int | None:
    """What detecting the model's files again says its width is (None when they no longer detect)."""
    from corral.api import detect_path

    try:
        facts = detect_path(model.path).facts
    except CorralError:
        return None
    return facts.hidden_size if model.format == Format.SAFETENSORS else facts.embedding_dims


def _width(module: Any, older: str) -> int:
    """Output width; sentence-transformers 6 renamed the older ``get_*_embedding_dimension`` methods."""
    method = getattr(module, "get_embedding_dimension", None) or getattr(module, older)
    return method()


def _run_error(name: str, exc: Exception) -> CorralError:
    text = " ".join(str(exc).split())[:300]
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return CorralError(f"{name}: out of memory while embedding; lower batch_size ({text})")
    return CorralError(f"{name}: embedding failed ({type(exc).__name__}: {text})")


def load_embedding(model: Model, settings: Mapping[str, Any]) -> EmbeddingModel:
    """Load ``model`` as a ``SentenceTransformer`` and check its vectors have the detected width."""
    torch_threads(settings)
    options = Options.read(model, settings)
    check_files(model)
    device = resolve_device(model, options.device)
    check_max_seq_length(model, options, model.facts.context_length)
    with model_folder(model) as folder, offline_and_quiet():
        from sentence_transformers import SentenceTransformer

        try:
            encoder = SentenceTransformer(
                str(folder),
                device=device,
                local_files_only=True,
                trust_remote_code=options.trust_remote_code,
                model_kwargs={"dtype": torch_dtype(options.dtype)},
            )
        except CorralError:
            raise
        except Exception as exc:
            raise load_error(model, folder, exc) from exc
    if options.max_seq_length:
        encoder.max_seq_length = options.max_seq_length
    handle = EmbeddingModel(model, settings, encoder, options)
    _check_dimensions(handle, encoder)
    return handle


def _check_dimensions(handle: EmbeddingModel, encoder: Any) -> None:
    """The width detected at import must be the width the loaded model produces.

    A model folder is compared on its output (pooling, and any Dense layer, included); a lone weights
    file was detected from its tensors alone, so it is compared on the transformer's width. A difference
    is refused when the files changed since import (detecting them again gives another width); when they
    did not, the import-time reading fell short of the pipeline (several pooling modes concatenated, for
    one) and the loaded model's own width, ``dimensions``, stands.
    """
    model = handle.model
    expected = model.facts.embedding_dims
    if model.format == Format.SAFETENSORS:
        expected, real = model.facts.hidden_size or expected, _width(encoder[0], "get_word_embedding_dimension")
    else:
        real = handle.dimensions
    if expected and real != expected and _width_detected_now(model) != expected:
        handle.unload()
        raise DetectionError(f"{model.name}: loaded with {real}-dimensional output, but {expected} dimensions "
                             f"were detected at import; its files changed: remove the model and import "
                             f"{model.path} again")
