"""Loading a GGUF into llama.cpp so that a bad file is one clear error, never a dead process.

llama.cpp is C++: a file that lies in its header can make it abort the whole process (an assertion, a
division by zero) instead of failing. So before llama.cpp sees a file, Corral's own bounded header parser
reads it (truncation, hostile lengths, missing data) and the hyperparameters llama.cpp divides by are
checked; the LoRA is checked against the base's tensor shapes and the projector against the model's
width. What llama.cpp still refuses comes back as an exception from llama-cpp-python, explained with the
error line llama.cpp logged.

Memory is measured around the load: the process's resident set before, and after a one-token warm-up
(which makes a memory-mapped model's weights resident, as its first request would), and free VRAM per GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from corral.api import CorralError, DetectionError, Incompatible, InvalidSetting
from corral.api import gguf_lora, gguf_projector, preflight_gguf
from corral.api import LoraRequest, Model

from corral_llamacpp import logs
from corral_llamacpp.options import llama_kwargs
from corral_llamacpp.templates import Renderer, choose_template



def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def load(model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
    """Load ``model`` with ``settings`` and at most one LoRA; returns a :class:`LlamaCppModel`."""
    import llama_cpp

    from corral_llamacpp import devices
    from corral_llamacpp.loaded import LlamaCppModel

    preflight_gguf(model)
    lora = gguf_lora(model, loras)
    mmproj = gguf_projector(model)
    kwargs = llama_kwargs(model, settings)
    chat_template, chat_format = settings.get("chat_template"), settings.get("chat_format")
    if chat_template and chat_format:
        raise InvalidSetting(
            f"{model.name}: set chat_template or chat_format, not both "
            f"(corral settings {model.name} --unset chat_format)"
        )
    if chat_format:
        _check_chat_format(model, chat_format)
        if mmproj is not None:
            raise InvalidSetting(
                f"{model.name}: chat_format applies to text-only models; a multimodal model renders a chat "
                f"template around its images (corral settings {model.name} --unset chat_format)"
            )
    if lora:
        kwargs["lora_path"], kwargs["lora_scale"] = lora

    logs.install(echo=kwargs["verbose"])
    logs.clear()
    on_gpu = kwargs["n_gpu_layers"] != 0 and llama_cpp.llama_supports_gpu_offload()
    gpu_before = devices.gpu_free() if on_gpu else {}
    rss_before = _rss()
    try:
        llm = llama_cpp.Llama(model_path=str(model.path), chat_format=chat_format, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise _load_error(model, kwargs, exc, lora) from None
    try:
        projector = None
        if mmproj is not None:
            projector = _load_projector(model, llm, mmproj, on_gpu)
        renderer = None if chat_format else _renderer(model, llm, chat_template)
        _warm_up(llm)
    except BaseException:
        llm.close()
        raise
    ram = max(0, _rss() - rss_before)
    vram = 0
    if gpu_before:
        after = devices.gpu_free()
        vram = sum(max(0, free - after.get(name, free)) for name, free in gpu_before.items())
    return LlamaCppModel(
        model, settings, loras,
        llama=llm, renderer=renderer, chat_format=chat_format, projector=projector,
        memory={"ram": ram, "vram": vram},
    )  # fmt: skip


def _load_error(model: Model, kwargs: Mapping[str, Any], exc: Exception, lora) -> CorralError:
    why = logs.last_error()
    message = str(exc)
    because = f": {why}" if why else ""
    if "LoRA" in message and lora:
        return Incompatible(f"llama.cpp could not apply LoRA {lora[0]} to {model.name}{because}")
    if "context" in message.lower():
        memory = not why or any(w in why.lower() for w in ("memory", "alloc", "buffer"))
        hint = (
            f"lower n_ctx (corral settings {model.name} --n-ctx N) or free memory"
            if memory
            else f"change the setting it names (corral settings {model.name})"
        )
        return CorralError(
            f"{model.name}: llama.cpp could not create a context of {kwargs['n_ctx'] or 'the model’s'} "
            f"tokens{because}; {hint}"
        )
    return DetectionError(
        f"{model.path}: llama.cpp could not load this GGUF{because or ' (' + message + ')'}; the file may be "
        "corrupt, or made for a newer llama.cpp (upgrade llama-cpp-python)"
    )


def _load_projector(model: Model, llm: Any, mmproj: Path, on_gpu: bool) -> Any:
    from corral_llamacpp.images import projector_handler

    # Built now with a placeholder template so a broken projector fails the load, not the first request;
    # the real template is set once the chat template is chosen.
    handler = projector_handler(mmproj, "", use_gpu=on_gpu)
    try:
        handler._init_mtmd_context(llm)
    except ValueError as exc:
        why = logs.last_error()
        raise Incompatible(
            f"mmproj {mmproj}: llama.cpp could not load this projector for {model.name}"
            f" ({why or exc}); attach the projector made for this model"
        ) from None
    llm.chat_handler = handler
    return handler


def _renderer(model: Model, llm: Any, override: str | None) -> Renderer:
    def has_special_token(text: str) -> bool:
        return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)) == 1

    template = choose_template(
        override=override,
        embedded=llm.metadata.get("tokenizer.chat_template"),
        architecture=model.facts.architecture or llm.metadata.get("general.architecture"),
        has_special_token=has_special_token,
        model_name=model.name,
    )
    renderer = Renderer(
        template,
        bos_token=_token_text(llm, llm.token_bos()),
        eos_token=_token_text(llm, llm.token_eos()),
        model_name=model.name,
    )
    if llm.chat_handler is not None:  # the projector renders the same template around images
        llm.chat_handler.template_source = template.source
    return renderer


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return llm.detokenize([token], special=True).decode("utf-8", errors="replace")


def _warm_up(llm: Any) -> None:
    """Evaluate one token, as llama.cpp's own tools do, so the weights are resident before measuring."""
    token = llm.token_bos()
    if token < 0:
        token = llm.token_eos()
    if token < 0:
        return
    llm.eval([token])
    llm.reset()


def _check_chat_format(model: Model, name: str) -> None:
    from llama_cpp import llama_chat_format

    known = sorted(llama_chat_format.LlamaChatCompletionHandlerRegistry()._chat_handlers)
    if name not in known:
        raise InvalidSetting(f"{model.name}: chat_format {name!r} is not one of llama-cpp-python's: {', '.join(known)}")
