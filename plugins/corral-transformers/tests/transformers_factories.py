"""Test files for this plugin's tests that need more than ``factories``: model copies with a chat template,
PEFT adapters built with peft."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

#: A small chat template, in the shape most Hugging Face templates have.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def copy_model(src: Path, dest: Path, *, chat_template: str | None = None) -> Path:
    """A copy of the model folder ``src`` (tests change files in it), with ``chat_template`` set if given."""
    shutil.copytree(src, dest)
    if chat_template is not None:
        path = dest / "tokenizer_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["chat_template"] = chat_template
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return dest


def build_adapter(base_dir: Path, out: Path, *, seed: int, rank: int = 4, config=None) -> Path:
    """A LoRA on q_proj and v_proj with random (non-zero) A and B, saved by peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    if config is None:
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), local_files_only=True, dtype=torch.float32)
    else:
        base = AutoModelForCausalLM.from_config(config)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                      init_lora_weights=False, task_type="CAUSAL_LM")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations inside peft
        get_peft_model(base, lora).save_pretrained(str(out))
    return out


def write_hf_cache(root: Path, repo: str, src: Path, commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """``src``'s files laid out as huggingface_hub caches ``repo``: content in ``blobs/``, the snapshot
    linking to them, ``refs/main`` naming the commit. Returns the snapshot folder."""
    import hashlib

    repo_dir = Path(root) / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(p for p in Path(src).iterdir() if p.is_file()):
        data = file.read_bytes()
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
