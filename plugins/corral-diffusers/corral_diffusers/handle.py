"""The loaded image model: load (pipeline, LoRAs, device and memory settings), generate, measure, unload.

``imagine(prompt, **params)`` returns PIL images: one per call for image models, every frame of the clip
for video models. A request is checked against the model's capability tags first (``text-to-image``,
``image-to-image``, ``video``), so a model can be limited to what it does well.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping, Sequence

from corral.api import LoadedModel, Unsupported, free_torch_memory, torch_memory, torch_threads
from corral.api import (
    CorralError,
    DetectionError,
    Incompatible,
    InsufficientMemory,
    InvalidRequest,
    NotFound,
)
from corral.api import LoraRequest, Model
from corral_diffusers.options import Options, resolve_device, torch_dtype

#: What ``imagine`` accepts (the HTTP API and the CLI send these names).
PARAMS = frozenset({"image", "strength", "steps", "guidance", "width", "height", "seed", "negative_prompt",
                    "num_frames"})


def load_image_model(model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest]) -> "DiffusersModel":
    """Build ``model``'s pipeline offline, apply its LoRAs and settings."""
    torch_threads(settings)
    from corral_diffusers.assemble import build_pipeline
    from corral_diffusers.configs import offline_and_quiet
    from corral_diffusers.loras import apply_loras

    options = Options.read(model, settings)
    if not Path(model.path).exists():
        raise NotFound(f"{model.name}: {model.path} is missing (the model's files changed since import); "
                       "restore it, or remove the model and import it again")
    device = resolve_device(model, options.device)
    dtype = torch_dtype(model, options.dtype, device)
    pipe = None
    try:
        with offline_and_quiet():
            pipe = build_pipeline(model, options.config, dtype)
            names = apply_loras(model, pipe, loras)
            notes = _place(model, pipe, options, device)
    except CorralError:
        pipe = None
        free_torch_memory()
        raise
    except Exception as exc:
        pipe = None
        free_torch_memory()
        raise load_error(model, exc) from None
    return DiffusersModel(model, settings, loras, pipe, device=device, adapters=names, notes=notes)


def _place(model: Model, pipe: Any, options: Options, device: str) -> list[str]:
    """Move ``pipe`` to ``device`` (or set up CPU offload on CUDA) and turn on the memory savers asked for."""
    notes = []
    pipe.set_progress_bar_config(disable=True)
    if options.cpu_offload != "none" and device.startswith("cuda"):
        gpu = int(device.partition(":")[2] or 0)
        if options.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(gpu_id=gpu)
        else:
            pipe.enable_model_cpu_offload(gpu_id=gpu)
    else:
        if options.cpu_offload != "none":  # offload moves weights to a GPU: on the CPU there is none
            notes.append(f"cpu_offload={options.cpu_offload} does nothing on {device}; the weights stay there")
        pipe.to(device)
    if options.attention_slicing:
        if not hasattr(pipe, "enable_attention_slicing"):
            raise Incompatible(f"{model.name}: a {type(pipe).__name__} has no attention slicing; "
                               f"corral settings {model.name} --unset attention_slicing")
        pipe.enable_attention_slicing()
    if options.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise Incompatible(f"{model.name}: its VAE cannot decode in tiles; corral settings {model.name} "
                               "--unset vae_tiling")
        vae.enable_tiling()
    return notes


def load_error(model: Model, exc: BaseException) -> CorralError:
    """One clear line for a backend failure while loading ``model``."""
    text = " ".join(str(exc).split())[:400]
    name = type(exc).__name__
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return InsufficientMemory(f"{model.name}: out of memory while loading {model.path}; try dtype=fp16, "
                                  f"cpu_offload=model or attention_slicing: corral settings {model.name} --set ...")
    if any(type(e).__name__ == "UnpicklingError" or "Weights only load failed" in str(e) for e in _chain(exc)):
        return DetectionError(f"{model.name}: {model.path} holds pickled code that torch's safe loader refuses "
                              "(Corral never runs it); use a .safetensors copy of the model")
    if name == "SingleFileComponentError":
        return Incompatible(f"{model.name}: {model.path} lacks a part of its pipeline ({text}); attach it: "
                            f"corral component add {model.name} KIND PATH")
    if "size mismatch" in text or ("shape" in text.lower() and "mismatch" in text.lower()):
        return Incompatible(f"{model.name}: the weights in {model.path} do not fit the pipeline configuration "
                            f"({text}); point the config setting at its family's folder: corral settings "
                            f"{model.name} --set config=DIR")
    if isinstance(exc, (KeyError, IndexError)):  # single-file conversion looked for tensors that are not there
        return Incompatible(f"{model.name}: the tensor names in {model.path} match no layout diffusers converts "
                            f"for this pipeline ({name}: {text}); check the file and the --template it was "
                            "imported with")
    if isinstance(exc, (OSError, ValueError)) or name in ("SafetensorError", "HeaderTooLarge"):
        return DetectionError(f"{model.name}: {model.path} cannot be loaded ({name}: {text}); re-download the "
                              "model or import a complete one")
    return CorralError(f"{model.name}: diffusers could not load {model.path} ({name}: {text})")


def _default(parameters: Mapping[str, inspect.Parameter], name: str) -> Any:
    parameter = parameters.get(name)
    return None if parameter is None else parameter.default


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (diffusers re-raises pickle refusals as OSError)."""
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 16:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


class DiffusersModel(LoadedModel):
    """A diffusers pipeline held for generation; a derived image-to-image (or text-to-image) pipeline
    shares its weights when a request needs the other mode."""

    def __init__(self, model: Model, settings: Mapping[str, Any], loras: Sequence[LoraRequest], pipe: Any, *,
                 device: str, adapters: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(model, settings, loras)
        self.pipe = pipe
        self.device = device
        self.adapters = list(adapters)
        self.notes = list(notes)
        self.is_video = hasattr(pipe, "video_processor")
        self._derived: dict[str, Any] = {}

    # --- requests ---------------------------------------------------------------------------------

    def imagine(self, prompt: str, **params: Any) -> list[Any]:
        """Generate from ``prompt``: a list of PIL images (one image, or a video's frames).

        ``params``: image (PIL image or path; image-to-image), strength, steps, guidance, width, height,
        seed, negative_prompt, num_frames (video). Each is optional; unset ones take the model's defaults.
        """
        unknown = sorted(set(params) - PARAMS)
        if unknown:
            raise InvalidRequest(f"{self.model.name}: imagine takes no {', '.join(unknown)} "
                                 f"(it takes: {', '.join(sorted(PARAMS))})")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest(f"{self.model.name}: the prompt is empty")
        image = params.get("image")
        mode = self._check_capability(image is not None)
        pipe = self._pipeline(mode)
        if image is not None:
            image = self._input_image(image, params.get("width"), params.get("height"))
        kwargs = self._call_kwargs(pipe, prompt, image, params)
        import torch

        try:
            with torch.inference_mode():
                result = pipe(**kwargs)
        except CorralError:
            raise
        except ValueError as exc:  # diffusers' own input checks
            raise InvalidRequest(f"{self.model.name}: {' '.join(str(exc).split())[:300]}") from None
        except Exception as exc:
            if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
                raise InsufficientMemory(f"{self.model.name}: out of memory generating {kwargs.get('width')}x"
                                         f"{kwargs.get('height')}; try a smaller size, vae_tiling, "
                                         "attention_slicing or cpu_offload") from None
            raise CorralError(f"{self.model.name}: generation failed ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]})") from None
        if self.is_video:
            return list(result.frames[0])
        return list(result.images)

    def _check_capability(self, with_image: bool) -> str:
        """The request's mode, after checking the model is tagged for it."""
        tags = set(self.model.tags)
        if self.is_video:
            mode, allowed = ("image-to-video", {"image-to-video"}) if with_image else (
                "video", {"video", "text-to-video"})
        else:
            mode = "image-to-image" if with_image else "text-to-image"
            allowed = {mode}
        if not tags & allowed:
            have = ", ".join(sorted(tags)) or "none"
            raise Unsupported(f"{self.model.name} is not tagged for {mode} (its tags: {have}); if it can, tag it: "
                              f"corral edit {self.model.name} --tag {mode}")
        return mode

    def _pipeline(self, mode: str) -> Any:
        """The pipeline for ``mode``: the loaded one, or one derived from it sharing its weights."""
        takes_image = "image" in inspect.signature(self.pipe.__call__).parameters
        wants_image = mode in ("image-to-image", "image-to-video")
        if takes_image == wants_image:
            return self.pipe
        if mode in self._derived:
            return self._derived[mode]
        if self.is_video:
            raise Unsupported(f"{self.model.name}: a {type(self.pipe).__name__} makes video from "
                              f"{'an image' if takes_image else 'text'} only")
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

        from corral_diffusers.configs import offline_and_quiet

        auto = AutoPipelineForImage2Image if wants_image else AutoPipelineForText2Image
        try:
            with offline_and_quiet():
                derived = auto.from_pipe(self.pipe)
        except Exception as exc:
            raise Unsupported(f"{self.model.name}: diffusers has no {mode} pipeline for a {type(self.pipe).__name__} "
                              f"({' '.join(str(exc).split())[:200]})") from None
        derived.set_progress_bar_config(disable=True)
        self._derived[mode] = derived
        return derived

    def _input_image(self, image: Any, width: int | None, height: int | None) -> Any:
        """The input image as RGB, resized to the asked size (the output takes the input's size)."""
        from PIL import Image, UnidentifiedImageError

        if not isinstance(image, Image.Image):
            path = Path(image)
            try:
                with Image.open(path) as opened:
                    image = opened.convert("RGB")
            except FileNotFoundError:
                raise NotFound(f"input image {path} does not exist") from None
            except (UnidentifiedImageError, OSError) as exc:
                raise InvalidRequest(f"input image {path} cannot be read as an image ({exc})") from None
        else:
            image = image.convert("RGB")
        if width and height and image.size != (width, height):
            image = image.resize((width, height), Image.LANCZOS)
        return image

    def _granularity(self, pipe: Any) -> int:
        """Width and height must be multiples of this (the VAE's downscale, times the patch size)."""
        processor = getattr(pipe, "video_processor" if self.is_video else "image_processor", None)
        factor = int(getattr(getattr(processor, "config", None), "vae_scale_factor", 8) or 8)
        if self.is_video:
            denoiser = getattr(pipe, "transformer", None)
            patch = getattr(getattr(denoiser, "config", None), "patch_size", None)
            if isinstance(patch, (list, tuple)) and patch:
                factor *= int(patch[-1])
        return factor

    def _call_kwargs(self, pipe: Any, prompt: str, image: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs: dict[str, Any] = {"prompt": prompt, "output_type": "pil"}
        width, height = params.get("width"), params.get("height")
        if (width is None) != (height is None):
            raise InvalidRequest(f"{self.model.name}: give both width and height, or neither")
        if width is not None:
            step = self._granularity(pipe)
            if width <= 0 or height <= 0 or width % step or height % step:
                raise InvalidRequest(f"{self.model.name}: size {width}x{height}: width and height must be positive "
                                     f"multiples of {step} for this model")
            if "width" in accepted:
                kwargs.update(width=width, height=height)
        if image is not None:
            kwargs["image"] = image
            if params.get("strength") is not None and "strength" in accepted:
                kwargs["strength"] = float(params["strength"])
        elif params.get("strength") is not None:
            raise InvalidRequest(f"{self.model.name}: strength applies to image-to-image; give an input image")
        if params.get("steps") is not None:
            if int(params["steps"]) < 1:
                raise InvalidRequest(f"{self.model.name}: steps must be at least 1")
            kwargs["num_inference_steps"] = int(params["steps"])
        if image is not None and "strength" in accepted:
            # Image-to-image runs only the last steps x strength steps: none at all fails deep in diffusers.
            steps = kwargs.get("num_inference_steps", _default(accepted, "num_inference_steps"))
            strength = kwargs.get("strength", _default(accepted, "strength"))
            if isinstance(steps, int) and isinstance(strength, float) and int(steps * strength) < 1:
                raise InvalidRequest(f"{self.model.name}: {steps} steps at strength {strength} leave no step to run; "
                                     "raise steps or strength")
        if params.get("guidance") is not None:
            kwargs["guidance_scale"] = float(params["guidance"])
        if params.get("negative_prompt") is not None:
            if "negative_prompt" not in accepted:
                raise InvalidRequest(f"{self.model.name}: a {type(pipe).__name__} takes no negative prompt")
            kwargs["negative_prompt"] = params["negative_prompt"]
        if params.get("num_frames") is not None:
            if "num_frames" not in accepted:
                raise InvalidRequest(f"{self.model.name}: num_frames applies to video models")
            kwargs["num_frames"] = int(params["num_frames"])
        if params.get("seed") is not None:
            import torch

            # The noise is drawn on the CPU: a seed starts from the same noise on every device.
            kwargs["generator"] = torch.Generator(device="cpu").manual_seed(int(params["seed"]))
        return kwargs

    # --- bookkeeping ------------------------------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """Bytes the pipeline's weights and buffers take in system memory (``ram``) and on GPUs (``vram``)."""
        import torch

        return torch_memory(*(part for part in self.pipe.components.values() if isinstance(part, torch.nn.Module)))

    def unload(self) -> None:
        """Drop the pipelines and give their memory back now."""
        self._derived.clear()
        self.pipe = None
        free_torch_memory()
