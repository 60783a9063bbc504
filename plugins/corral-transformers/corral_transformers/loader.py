"""Loading a Hugging Face causal LM (and its PEFT adapters) so that every failure is one clear Corral error.

Only local files are read (``local_files_only=True``): a model folder, a lone weight file beside its
``config.json``, or the model's snapshot in the Hugging Face cache. Pickled weights go through torch's
weights-only loader (``weights_only=True``); a record imported with ``--allow-unsafe`` is refused first.
Python code shipped in a model folder runs only when the model's ``trust_remote_code`` setting is on.

Memory is measured around the load: the process's resident set before and after, and the bytes torch
allocated on each GPU.
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from corral.api import torch_threads
from corral.api import CorralError, DetectionError, InsufficientMemory, InvalidSetting, UnsafeFile
from corral.api import LoraRequest, Model

from corral_transformers.locate import Source, locate
from corral_transformers.options import LoadOptions, chat_template_setting, load_options
from corral_transformers.pickles import PICKLE_SUFFIXES, load_weights_only, refuse_unsafe, require_safe_torch


def transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _vram() -> dict[int, int]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {i: torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())}


@contextmanager
def quiet(verbose: bool) -> Iterator[None]:
    """transformers' progress bars and warnings off for the load (unless ``verbose``), then as they were.

    ``corral chat MODEL PROMPT`` prints the reply alone and an error as one line; the bars are for people
    watching transformers itself.
    """
    from transformers.utils import logging

    if verbose:
        yield
        return
    bars, level = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def _remote_code_hint(model: Model, source: Source, exc: BaseException) -> CorralError | None:
    if "trust_remote_code" not in str(exc):
        return None
    return InvalidSetting(
        f"{model.name}: {source.folder} ships its own Python code for this architecture, which Corral runs only "
        f"when you allow it for this model: corral settings {model.name} --set trust_remote_code=true "
        "(that runs the .py files in the model folder with your permissions; read them first)"
    )


def load_error(model: Model, source: Source, exc: BaseException, what: str = "model") -> CorralError:
    """The Corral error for an exception transformers raised while loading ``model``."""
    import torch

    if isinstance(exc, CorralError):
        return exc
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in str(exc):
        return UnsafeFile(
            f"{source.weights or source.folder}: the pickled weights of {model.name} hold more than tensors, and "
            f"torch's weights-only loader refused them ({_first_line(exc)}); nothing in them ran. "
            "Use a safetensors copy of the model"
        )
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return InsufficientMemory(
            f"{model.name}: the GPU ran out of memory while loading ({_first_line(exc)}); try "
            f"corral settings {model.name} --set quantization=nf4, --set max_memory=..., or a smaller dtype"
        )
    hint = _remote_code_hint(model, source, exc)
    if hint is not None:
        return hint
    if "offload_folder" in str(exc) or "offload folder" in str(exc):
        return InvalidSetting(
            f"{model.name}: its weights do not all fit within max_memory, and the rest needs a folder on disk: "
            f"corral settings {model.name} --set offload_folder=DIR (or raise max_memory)"
        )
    return DetectionError(
        f"{source.weights or source.folder}: transformers could not load the {what} of {model.name} "
        f"({type(exc).__name__}: {_first_line(exc)}); the files may be incomplete or made for a newer "
        "transformers"
    )


def load_tokenizer(model: Model, source: Source, trust_remote_code: bool) -> Any:
    """The model's tokenizer from its folder."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(source.folder), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # transformers raises many kinds for a broken or missing tokenizer
        raise load_error(model, source, exc, "tokenizer") from None
    if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
        raise DetectionError(f"{source.folder}: no text tokenizer for {model.name}")
    return tokenizer


def _causal_lm_class(model: Model, config: Any) -> Any:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise DetectionError(
            f"{model.path}: transformers has no causal LM class for model_type "
            f"{getattr(config, 'model_type', '?')!r}; import the model folder instead of the lone file"
        ) from None


def load_causal_lm(model: Model, source: Source, options: LoadOptions) -> Any:
    """The transformers model, in eval mode, placed as ``options`` say."""
    from transformers import AutoConfig, AutoModelForCausalLM

    kwargs = dict(options.kwargs)
    try:
        if source.weights is None:
            if not any(source.folder.glob("*.safetensors")) and any(
                p.suffix in PICKLE_SUFFIXES for p in source.folder.iterdir()
            ):
                require_safe_torch(str(source.folder))
            lm = AutoModelForCausalLM.from_pretrained(
                str(source.folder), local_files_only=True, **_weights_only(), **kwargs
            )
        else:
            config = AutoConfig.from_pretrained(
                str(source.folder), local_files_only=True, trust_remote_code=kwargs["trust_remote_code"]
            )
            state = _state_dict(source)
            kwargs.pop("trust_remote_code")
            lm = _causal_lm_class(model, config).from_pretrained(None, config=config, state_dict=state, **kwargs)
    except Exception as exc:
        raise load_error(model, source, exc) from None
    lm.eval()
    return lm


def _weights_only() -> dict[str, bool]:
    """``weights_only=True`` for ``from_pretrained``, where the installed transformers takes the argument
    (older ones call ``torch.load(weights_only=True)`` unasked)."""
    import inspect

    from transformers import PreTrainedModel

    return {"weights_only": True} if "weights_only" in inspect.signature(PreTrainedModel.from_pretrained).parameters else {}


def _state_dict(source: Source) -> dict[str, Any]:
    assert source.weights is not None
    if source.weights.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(source.weights))
        except Exception as exc:  # safetensors_rust.SafetensorError for a damaged file
            raise DetectionError(f"{source.weights}: not a readable safetensors file ({_first_line(exc)})") from None
    return load_weights_only(source.weights, what="this checkpoint")


def _import_model_code(source: Source, trust_remote_code: bool) -> None:
    """Import transformers' modules for this architecture before measuring: that is a one-time cost of
    the process (about 200 MB), not what this model takes."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoTokenizer  # noqa: F401

    try:
        config = AutoConfig.from_pretrained(str(source.folder), local_files_only=True,
                                            trust_remote_code=trust_remote_code)
        MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except Exception:  # the load itself reports what is wrong, with the file named
        pass


def load(model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest] = ()):
    """Load ``model`` with ``settings`` and any number of weighted LoRAs; returns a :class:`TransformersModel`."""
    from corral_transformers import adapters
    from corral_transformers.loaded import TransformersModel

    refuse_unsafe(model)
    source = locate(model)
    options = load_options(model, settings, transformers_5=transformers_major() >= 5)
    template = chat_template_setting(model, settings)
    torch_threads(settings)
    verbose = bool(settings.get("verbose", False))
    with quiet(verbose):
        _import_model_code(source, bool(options.kwargs["trust_remote_code"]))
    rss_before, vram_before = _rss(), _vram()
    with quiet(verbose):
        tokenizer = load_tokenizer(model, source, bool(options.kwargs["trust_remote_code"]))
        lm = load_causal_lm(model, source, options)
        applied: tuple = ()
        if loras:
            lm, applied = adapters.apply(lm, model, loras)
    vram = sum(max(0, used - vram_before.get(i, 0)) for i, used in _vram().items())
    # Memory-mapped safetensors weights count in the resident set only once touched: count them whole.
    on_cpu = sum(t.numel() * t.element_size() for t in (*lm.parameters(), *lm.buffers()) if t.device.type == "cpu")
    memory = {"ram": max(0, _rss() - rss_before, on_cpu), "vram": vram}
    return TransformersModel(
        model, settings, loras,
        lm=lm, tokenizer=tokenizer, options=options, chat_template=template, adapters=applied, memory=memory,
    )  # fmt: skip
