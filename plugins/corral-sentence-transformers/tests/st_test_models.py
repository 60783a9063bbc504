"""Tiny random-weight sentence-transformers models for the plugin's tests, each with a WordPiece tokenizer
trained here on a few lines of text: cross-encoders (one or more labels) and embedding models (mean
pooling, optional Dense layer, no Normalize module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "a cat sits on the mat",
    "a kitten rests on a rug",
    "stock prices fell sharply today",
    "the market rallied after the report",
    "dogs bark at the mailman every morning",
    "rain is expected over the weekend",
    "the recipe needs two eggs and some flour",
    "a bird sings in the tall tree",
]


def trained_tokenizer() -> Any:
    """A BERT-style fast tokenizer whose WordPiece vocabulary is trained here on :data:`CORPUS`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


def bert_config(vocab: int, hidden: int, arch: str, **more: Any) -> Any:
    """A two-layer BERT config of width ``hidden`` for a ``vocab``-token tokenizer."""
    from transformers import BertConfig

    # A wide weight spread, so that different texts get clearly different vectors and scores.
    return BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=2 * hidden, max_position_embeddings=64, initializer_range=0.5,
                      architectures=[arch], **more)


def write_trained_cross_encoder(directory: Path, *, hidden: int = 32, labels: int = 1, seed: int = 0) -> Path:
    """A BERT cross-encoder (random weights, ``labels`` outputs) with a locally trained tokenizer."""
    import torch
    from transformers import BertForSequenceClassification

    tokenizer = trained_tokenizer()
    torch.manual_seed(seed)
    config = bert_config(len(tokenizer), hidden, "BertForSequenceClassification", num_labels=labels)
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def write_trained_embedding_model(directory: Path, *, hidden: int = 32, dense: int | None = None,
                                  pooling: str | tuple[str, ...] = "mean", seed: int = 0) -> Path:
    """A sentence-transformers embedding model: random BERT + ``pooling`` (+ a Dense layer of width
    ``dense``), no Normalize module, with a locally trained tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer
    from transformers import BertModel

    tokenizer = trained_tokenizer()
    torch.manual_seed(seed)
    base = Path(directory).with_name(Path(directory).name + "-base")
    BertModel(bert_config(len(tokenizer), hidden, "BertModel")).eval().save_pretrained(base)
    tokenizer.save_pretrained(base)
    modules = [Transformer(str(base), max_seq_length=64), Pooling(hidden, pooling_mode=pooling)]
    if dense:
        modules.append(Dense(hidden * (1 if isinstance(pooling, str) else len(pooling)), dense))
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))
    return Path(directory)
