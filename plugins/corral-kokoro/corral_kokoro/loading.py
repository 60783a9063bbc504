"""Loading a Kokoro folder from local files only: config.json checked, a ``kokoro.KModel`` built from it,
the checkpoint's weights loaded strictly into it, and voices read when first asked for.

Every file is read with torch's ``weights_only`` loader. ``KModel`` would load the checkpoint itself, but
it falls back to a lenient load that leaves any weight it cannot place at its random starting value; here
a checkpoint that does not match config.json is refused instead (only the norms Kokoro was trained
without may be absent, see :func:`identity_norm_keys`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

from corral.api import CorralError, DetectionError, InsufficientMemory, NotFound
from corral.api import free_torch_memory, torch_device
from corral.api import Model

#: The parts of a Kokoro checkpoint, each the state dict of the ``KModel`` attribute of that name.
COMPONENTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
#: Kokoro reads one style row per phoneme count, and its context holds 510 phonemes.
MAX_PHONEMES = 510
#: ``KModel.forward`` splits a style row at this index (timbre for the decoder, prosody for the predictor).
STYLE_DIM = 128
#: Channels that kokoro's decoder fixes (``hidden_dim`` and the generator's first layer must match them).
DECODER_CHANNELS = 512
#: Kokoro's name for its model; only used to silence KModel's "defaulting repo_id" notice, never fetched.
REPO_ID = "hexgrad/Kokoro-82M"


def model_files(model: Model) -> tuple[dict, Path, dict[str, Path]]:
    """(config, checkpoint, voice name -> file) of ``model``'s Kokoro folder, as it is on disk now.

    :raises NotFound: the folder is gone.
    :raises DetectionError: it is no longer a Kokoro layout, or config.json is unreadable.
    """
    from corral.api import kokoro_layout

    path = Path(model.path)
    if not path.exists():
        raise NotFound(f"{model.name}: {path} is missing (the model's files changed since import); restore it, "
                       "or remove the model and import it again")
    folder = path if path.is_dir() else path.parent
    layout = kokoro_layout(folder)
    if layout is None:
        raise DetectionError(f"{model.name}: {folder} is not a Kokoro folder (config.json with istftnet and "
                             "plbert, a .pth checkpoint, voices/*.pt); re-download it, or import it again")
    config, checkpoint, voices = layout
    if path.is_file() and path.suffix == ".pth":
        checkpoint = path
    return config, checkpoint, {v.stem: v for v in voices}


def check_config(name: str, path: Path, config: dict) -> None:
    """Refuse a config.json that ``KModel`` would build into something that cannot speak."""
    where = f"{name}: {path / 'config.json' if path.is_dir() else path}"
    if config.get("style_dim") != STYLE_DIM:
        raise DetectionError(f"{where}: style_dim is {config.get('style_dim')!r}; kokoro's KModel only works "
                             f"with {STYLE_DIM} (it splits each voice row at that index)")
    # The decoder's layers around the generator are fixed at 512 channels in kokoro's code.
    istftnet = config.get("istftnet") if isinstance(config.get("istftnet"), dict) else {}
    for label, value in (("hidden_dim", config.get("hidden_dim")),
                         ("istftnet.upsample_initial_channel", istftnet.get("upsample_initial_channel"))):
        if value != DECODER_CHANNELS:
            raise DetectionError(f"{where}: {label} is {value!r}; kokoro's decoder only works with {DECODER_CHANNELS}")
    n_token = config.get("n_token")
    vocab = config.get("vocab")
    if type(n_token) is not int or n_token < 1:
        raise DetectionError(f"{where}: n_token must be a positive integer, got {n_token!r}")
    if not isinstance(vocab, dict) or not vocab:
        raise DetectionError(f"{where}: vocab must map phoneme symbols to token ids")
    bad = [k for k, v in vocab.items() if type(v) is not int or not 0 <= v < n_token]
    if bad:
        raise DetectionError(f"{where}: vocab ids must lie in 0..{n_token - 1}; {bad[0]!r} does not")


def resolve_device(model: Model, device: str | None) -> str:
    """The torch device to load on: the setting (checked to exist here), else cuda when torch sees a GPU,
    else cpu (MPS only when asked for: some of Kokoro's operations have no MPS kernel)."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch_device(model.name, device)


def build_kmodel(model: Model, config: dict, checkpoint: Path, device: str) -> Any:
    """A ``kokoro.KModel`` built from ``config`` holding exactly the weights of ``checkpoint``, in eval mode."""
    import torch
    from kokoro import KModel

    state = read_checkpoint(model.name, checkpoint)
    empty = io.BytesIO()
    torch.save({}, empty)  # KModel loads whatever it is given: an empty checkpoint builds the bare modules
    empty.seek(0)
    try:
        with warnings.catch_warnings():  # weight_norm deprecation, LSTM dropout notes: nothing the user can act on
            warnings.simplefilter("ignore")
            kmodel = KModel(repo_id=REPO_ID, config=config, model=empty)
    except MemoryError:
        raise InsufficientMemory(f"{model.name}: out of memory while building the model for "
                                 f"{checkpoint.name}") from None
    except Exception as exc:  # KeyError/TypeError/ValueError from a config that does not describe a Kokoro model
        raise DetectionError(f"{model.name}: kokoro cannot build a model from config.json "
                             f"({type(exc).__name__}: {_short(exc)}); re-download the model") from None
    for key in COMPONENTS:
        module = getattr(kmodel, key)
        weights = _strip_prefix(state[key])
        # transformers no longer saves Albert's position_ids buffer; older checkpoints still carry it.
        expected = module.state_dict()
        weights = {k: v for k, v in weights.items() if k in expected or not k.endswith("position_ids")}
        optional = identity_norm_keys(module)
        missing = [k for k in expected if k not in weights and k not in optional]
        unexpected = [k for k in weights if k not in expected]
        wrong = [k for k in weights if k in expected and tuple(weights[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            parts = [f"{label} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                     for label, names in (("missing", missing), ("unknown", unexpected), ("wrong shape", wrong))
                     if names]
            raise DetectionError(f"{model.name}: {checkpoint.name} does not match config.json in {key} "
                                 f"({'; '.join(parts)}); use the config.json that came with the checkpoint")
        module.load_state_dict(weights, strict=False)  # only the identity norms may be absent (checked above)
    del state
    try:
        return kmodel.to(device).eval()
    except Exception as exc:  # torch.OutOfMemoryError on a full GPU, or a broken CUDA setup
        del kmodel
        free_torch_memory()
        if "out of memory" in str(exc).lower():
            raise InsufficientMemory(f"{model.name}: out of memory moving the model to {device}; "
                                     f"use the CPU: corral settings {model.name} --set device=cpu") from None
        raise CorralError(f"{model.name}: cannot move the model to {device} "
                          f"({type(exc).__name__}: {_short(exc)})") from None


def identity_norm_keys(module: Any) -> set[str]:
    """Weights a Kokoro checkpoint may lack: the affine scale and shift of kokoro's ``AdaIN1d`` instance
    norms. Kokoro was trained without them (kokoro adds them only so ONNX export keeps the channel
    dimension), so Kokoro-82M has none, and their initial values (scale 1, shift 0) are what it was
    trained with."""
    import torch

    keys = set()
    for name, child in module.named_modules():
        if isinstance(child, torch.nn.InstanceNorm1d) and child.affine:
            keys.update({f"{name}.weight", f"{name}.bias"})
    return keys


def read_checkpoint(name: str, path: Path) -> dict[str, dict]:
    """The checkpoint's five state dicts (tensors only: torch's ``weights_only`` loader)."""
    import torch

    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)  # a pre-zip legacy checkpoint
    except Exception as exc:  # UnpicklingError, RuntimeError, EOFError, ...: not a torch checkpoint
        raise DetectionError(f"{name}: {path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                             f"{_short(exc)}); re-download it") from None
    if not isinstance(state, dict) or not all(isinstance(state.get(k), dict) for k in COMPONENTS):
        found = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise DetectionError(f"{name}: {path} is not a Kokoro checkpoint (it needs the state dicts "
                             f"{', '.join(COMPONENTS)}; found {found}); re-download it")
    for key in COMPONENTS:
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state[key].items()):
            raise DetectionError(f"{name}: {path}: {key} holds something other than named tensors; re-download it")
    return state


def _strip_prefix(weights: dict) -> dict:
    """Kokoro-82M was trained under DataParallel: every name starts with ``module.``."""
    if weights and all(k.startswith("module.") for k in weights):
        return {k[len("module."):]: v for k, v in weights.items()}
    return dict(weights)


def read_voice(model_name: str, voice: str, path: Path) -> Any:
    """A voice pack: one style row per phoneme count, shaped ``(510, 1, 256)`` as ``KModel`` indexes it.

    :raises DetectionError: the file is unreadable, or not a tensor of that shape.
    """
    import torch

    try:
        pack = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DetectionError(f"{model_name}: voice {voice} ({path}) is not a readable PyTorch tensor file "
                             f"({type(exc).__name__}: {_short(exc)}); re-download it") from None
    width = 2 * STYLE_DIM
    shape = tuple(pack.shape) if isinstance(pack, torch.Tensor) else None
    if shape is not None and len(shape) == 2:
        pack = pack.unsqueeze(1)
        shape = tuple(pack.shape)
    if (shape is None or not pack.is_floating_point() or len(shape) != 3 or shape[1:] != (1, width)
            or shape[0] < MAX_PHONEMES):
        found = f"shape {shape}" if shape is not None else type(pack).__name__
        raise DetectionError(f"{model_name}: voice {voice} ({path}) is not a Kokoro voice pack (a float tensor "
                             f"of shape ({MAX_PHONEMES}, 1, {width}); found {found})")
    return pack.float().contiguous()


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
