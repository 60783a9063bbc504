"""Saving and loading tokenizer directories that ``transformers.AutoTokenizer.from_pretrained`` reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral_transformers.errors import TokenizerError

if TYPE_CHECKING:
    from tokenizers import Tokenizer


def save_fast_tokenizer(tokenizer: Tokenizer, out: Path, *, model_max_length: int | None = None,
                        **special: str) -> Any:
    """Write ``tokenizer`` as a transformers fast tokenizer (tokenizer.json + tokenizer_config.json).

    ``special`` names the roles of special tokens (``bos_token="<s>"``, ``eos_token=...``, ...).
    """
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = dict(special)
    if model_max_length:
        kwargs["model_max_length"] = model_max_length
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)
    fast.save_pretrained(str(out))
    portable_config(out)
    return fast


def portable_config(out: Path) -> None:
    """Name the generic fast-tokenizer class, which every transformers version since 4.x resolves.

    transformers 5 writes ``TokenizersBackend``, a class name that transformers 4 does not know.
    """
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in (None, "TokenizersBackend"):
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_tokenizer(directory: Path) -> Any:
    """The transformers tokenizer saved in ``directory``; a clear error when there is none."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise TokenizerError(f"{directory}: not a directory; pass a tokenizer folder (corral tokenizer train ... --out DIR)")
    if not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")):
        raise TokenizerError(f"{directory} holds no tokenizer files (tokenizer.json, tokenizer_config.json); "
                             "train one with: corral tokenizer train CORPUS --type bpe --out DIR")
    from transformers import AutoTokenizer

    try:
        # Only local files, and no code from the folder: tokenizer folders are untrusted input.
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many kinds for a broken folder
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TokenizerError(f"{directory}: transformers cannot load this tokenizer ({reason})") from None


def special_ids(tokenizer: Any) -> dict[str, int | None]:
    """bos / eos / pad token ids for the model config; bos falls back to eos, as GPT-style tokenizers do."""
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return {"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id}
