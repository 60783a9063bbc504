"""Loading a GGUF into llama.cpp's server engine (xllamacpp) so that a bad file is one clear error.

llama.cpp is C++: a file that lies in its header can abort the whole process. So before llama.cpp sees a
file, Corral's bounded header parser reads it and the hyperparameters llama.cpp divides by are checked,
the LoRA against the base's tensor shapes, the projector against the model's width (as corral-llamacpp
does). What llama.cpp still refuses is explained with the error line it logged, read from the process's
stderr while the load runs.

The engine runs in-process. llama-server insists on opening an HTTP listener; it gets a Unix socket in a
private directory (mode 0700) and a random API key, so no TCP port is bound and no other user can reach
it. Corral calls the engine's handlers directly.

Memory is measured around the load (the engine warms up, so a mapped model's weights are resident): the
process's resident set, and free memory per GPU.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from corral.api import Category, LoraRequest, Model
from corral.api import CorralError, DetectionError, Incompatible, InvalidSetting
from corral.api import gguf_lora, gguf_projector, preflight_gguf

from corral_llama_server.options import common_params, context_length, parallel
from corral_llama_server.templates import choose_template

#: One load at a time captures the process's stderr.
_capture_lock = threading.Lock()


def check_draft(model: Model, settings: Mapping[str, Any]) -> Path | None:
    """The GGUF for speculative decoding: the model's ``draft`` component (its vocabulary checked when it
    was attached), else the older ``draft_model`` setting, checked like a model of its own."""
    from corral.api import ComponentKind, read_gguf_header

    component = model.component(ComponentKind.DRAFT)
    if component is not None:
        path = Path(component.path)
        if not path.is_file():
            raise InvalidSetting(f"{model.name}: its draft component {path} does not exist; "
                                 f"corral component rm {model.name} draft")
        return path
    value = settings.get("draft_model")
    if not value:
        return None
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise InvalidSetting(f"{model.name}: draft_model {path} does not exist")
    header = read_gguf_header(path)
    if not header.tensors or header.metadata.get("general.type") in ("adapter", "mmproj"):
        raise InvalidSetting(f"{model.name}: draft_model {path} is not a language model GGUF")
    return path


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def gpu_free() -> dict[str, int]:
    """Free memory per GPU device llama.cpp sees (device name -> bytes); empty on a CPU-only machine."""
    import xllamacpp as x

    gpu = {x.ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_GPU, x.ggml_backend_dev_type.GGML_BACKEND_DEVICE_TYPE_IGPU}
    return {d["name"]: int(d["memory_free"]) for d in x.get_device_info() if d["type"] in gpu}


@contextmanager
def captured_stderr(echo: bool) -> Iterator[list[str]]:
    """Collect what the process writes to file descriptor 2 meanwhile (llama.cpp's log); the list is
    filled when the block ends. ``echo`` writes it on to the real stderr too."""
    lines: list[str] = []
    with _capture_lock, tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            time.sleep(0.05)  # llama.cpp logs from its own thread
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read(1 << 20).decode("utf-8", errors="replace")
            lines.extend(text.splitlines())
            if echo and text:
                sys.stderr.write(text)


def last_error(lines: Sequence[str]) -> str | None:
    """The most telling error line llama.cpp logged, without its timestamp and function prefix."""
    errors = [line for line in lines if " E " in line[:20] or "error" in line.lower()]
    for wanted in ("error loading model:", "failed to", "error", "missing", "unknown", "invalid"):
        for line in errors:
            if wanted in line.lower():
                text = line.split(" E ", 1)[-1].strip()
                if "error loading model:" in text:
                    text = text.split("error loading model:", 1)[1].strip()
                return text
    return None


def load(model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
    """Load ``model`` with ``settings`` and at most one LoRA; returns a :class:`LlamaServerModel`."""
    import xllamacpp as x

    from corral_llama_server.loaded import LlamaServerModel

    header = preflight_gguf(model)
    lora = gguf_lora(model, loras)
    mmproj = gguf_projector(model)
    draft = check_draft(model, settings)
    params = common_params(model, settings)
    params.model.path = str(model.path)
    template = None
    if model.category in (Category.EMBEDDING, Category.RERANK):
        params.embedding = True
        # One KV stream for all slots: with a stream per slot, llama.cpp pools the first of several texts
        # embedded together wrongly. The cache holds no history between embeddings, so nothing is lost.
        params.kv_unified = True
        if model.category == Category.RERANK:
            params.pooling_type = x.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    else:
        template = choose_template(
            override=settings.get("chat_template"),
            embedded=header.metadata.get("tokenizer.chat_template") if header else None,
            architecture=model.facts.architecture or (header.architecture if header else None),
        )
        params.use_jinja = template.jinja
        params.chat_template = template.source
    if mmproj is not None:
        params.mmproj.path = str(mmproj)
        params.mmproj_use_gpu = params.n_gpu_layers != 0
    if lora is not None:
        adapter = x.CommonAdapterLoraInfo()
        adapter.path, adapter.scale = lora
        params.lora_adapters = [adapter]
    if draft is not None:
        params.speculative.types = [x.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        params.speculative.draft.mparams.path = str(draft)
        params.speculative.draft.n_max = int(settings.get("draft_max") or 16)
        params.speculative.draft.n_gpu_layers = params.n_gpu_layers
    socket_dir = tempfile.mkdtemp(prefix="corral-llama-server-")  # 0700: only this user
    params.hostnames = [os.path.join(socket_dir, "engine.sock")]
    params.api_keys = [secrets.token_hex(16)]

    verbose = bool(settings.get("verbose"))
    params.verbosity = 3 if verbose else 1
    on_gpu = params.n_gpu_layers != 0
    gpu_before = gpu_free() if on_gpu else {}
    rss_before = _rss()
    try:
        with captured_stderr(echo=verbose) as log:
            try:
                server = x.Server(params)
            except (RuntimeError, ValueError) as exc:
                failure: Exception | None = exc
            else:
                failure = None
    except BaseException:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    if failure is not None:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise _load_error(model, settings, log, lora, mmproj, template) from None
    ram = max(0, _rss() - rss_before)
    vram = 0
    if gpu_before:
        after = gpu_free()
        vram = sum(max(0, free - after.get(name, free)) for name, free in gpu_before.items())
    return LlamaServerModel(
        model, settings, loras,
        server=server, socket_dir=socket_dir, template=template, projector=mmproj,
        slots=parallel(settings), slot_context=context_length(model, settings),
        memory={"ram": ram, "vram": vram},
    )  # fmt: skip


def _load_error(model: Model, settings: Mapping[str, Any], log: Sequence[str], lora, mmproj, template) -> CorralError:
    why = last_error(log)
    because = f": {why}" if why else ""
    text = "\n".join(log).lower()
    if lora and ("lora" in text or "adapter" in text):
        return Incompatible(f"llama.cpp could not apply LoRA {lora[0]} to {model.name}{because}")
    if mmproj is not None and ("clip" in text or "mtmd" in text or "mmproj" in text) and "error loading model" not in text:
        return Incompatible(
            f"mmproj {mmproj}: llama.cpp could not load this projector for {model.name}{because}; "
            "attach the projector made for this model"
        )
    if template is not None and template.name == "custom" and "template" in text:
        return InvalidSetting(f"{model.name}: llama.cpp refused the chat_template setting{because}")
    if "context" in text and "error loading model" not in text:
        return CorralError(
            f"{model.name}: llama.cpp could not create {parallel(settings)} slot(s) of "
            f"{context_length(model, settings)} tokens{because}; lower n_ctx or parallel "
            f"(corral settings {model.name} --n-ctx N --set parallel=N) or free memory"
        )
    return DetectionError(
        f"{model.path}: llama.cpp could not load this GGUF{because or ' (see its log: --set verbose=true)'}; "
        "the file may be corrupt, or made for a newer llama.cpp (upgrade xllamacpp)"
    )
