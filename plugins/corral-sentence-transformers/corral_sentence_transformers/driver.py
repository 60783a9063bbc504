"""The driver class: what it loads (categories, formats), what it needs, which settings it reads.

Only corral and the standard library are imported here; the backend comes in inside :meth:`load` and
:meth:`check`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, TorchDriver, Unsupported
from corral.api import Category, Format, LoraRequest, Model, SettingSpec

DISTRIBUTION = "corral-sentence-transformers"

#: The settings this driver reads (``corral settings MODEL --set name=value``); ``device``, ``dtype`` and
#: ``trust_remote_code`` exist in the core too and are declared again with what they mean here.
SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("device", str, "cpu, cuda, cuda:N or mps; unset: cuda if present, else mps, else cpu", None),
    SettingSpec("dtype", str, "weights precision: float32 (unset), float16, bfloat16, or auto (what "
                "config.json names)", None, ("auto", "float32", "float16", "bfloat16")),
    SettingSpec("batch_size", int, "texts (or query-document pairs) per forward pass", 32, minimum=1, maximum=65536),
    SettingSpec("normalize", bool, "scale embeddings to unit length, so a dot product is the cosine", False),
    SettingSpec("max_seq_length", int, "tokens kept per text (per query-document pair); unset: the model's own",
                None, minimum=1),
    SettingSpec("trust_remote_code", bool, "run Python code shipped in the model folder (config.json auto_map, "
                "custom modules); off unless set for this model", False),
)


class SentenceTransformersDriver(TorchDriver):
    """Embedding models (``SentenceTransformer``) and cross-encoder rerankers (``CrossEncoder``)."""

    name = "sentence-transformers"
    distribution = DISTRIBUTION
    categories = frozenset({Category.EMBEDDING, Category.RERANK})
    formats = frozenset({Format.HF_DIR, Format.SAFETENSORS})
    requires = ("sentence_transformers", "torch")
    max_loras = 0
    settings = SETTINGS

    def load(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()) -> LoadedModel:
        """Load an embedding model as a ``SentenceTransformer`` or a reranker as a ``CrossEncoder``."""
        if loras:
            raise Unsupported(f"{model.name}: sentence-transformers models take no LoRA adapters")
        if model.category == Category.EMBEDDING:
            from corral_sentence_transformers.embedding import load_embedding

            return load_embedding(model, settings)
        if model.category == Category.RERANK:
            from corral_sentence_transformers.rerank import load_reranker

            return load_reranker(model, settings)
        raise Unsupported(f"{model.name}: the sentence-transformers driver loads embedding and rerank models, "
                          f"not {model.category}")
