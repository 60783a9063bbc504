"""Fixtures for the diffusers plugin's tests: a plugin host with this plugin in it, and tiny pipelines built
once per session in every form users keep them (see tiny_pipelines.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest

import corral_diffusers

sys.path.insert(0, str(Path(__file__).parent))  # tiny_pipelines

import tiny_pipelines as tiny  # noqa: E402


@pytest.fixture
def host():
    """The built-in plugins plus this one (entry points stay off, as in the core's tests)."""
    from corral.testing.hosts import installed_host

    with installed_host(corral_diffusers) as fresh:
        yield fresh


@attrs.frozen
class Files:
    """One tiny pipeline on disk: its diffusers folder, a config-only copy, its parts as single files,
    and two LoRAs made for it."""

    folder: Path
    config: Path
    parts: dict
    loras: tuple[Path, Path]


def _write(root: Path, pipe) -> Files:
    folder = root / "pipeline"
    pipe.save_pretrained(folder)
    parts = tiny.save_parts(pipe, root / "parts")
    loras = (tiny.write_lora(pipe, root / "lora-a", seed=11), tiny.write_lora(pipe, root / "lora-b", seed=12))
    return Files(folder=folder, config=tiny.config_only(folder, root / "config"), parts=parts, loras=loras)


@pytest.fixture(scope="session")
def sdxl(tmp_path_factory) -> Files:
    """A tiny SDXL-style pipeline (64x64 images)."""
    return _write(tmp_path_factory.mktemp("sdxl"), tiny.tiny_sdxl())


@pytest.fixture(scope="session")
def sd15(tmp_path_factory) -> Files:
    """A tiny SD 1.x-style pipeline, also as one all-in-one LDM checkpoint (``parts["checkpoint"]``)."""
    root = tmp_path_factory.mktemp("sd15")
    pipe = tiny.tiny_sd15()
    folder = root / "pipeline"
    pipe.save_pretrained(folder)
    parts = {"checkpoint": tiny.write_all_in_one(pipe, root / "tiny-sd15.safetensors")}
    return Files(folder=folder, config=tiny.config_only(folder, root / "config"), parts=parts, loras=())


@pytest.fixture(scope="session")
def flux(tmp_path_factory) -> Files:
    """A tiny FLUX-style pipeline (32x32 images), with its transformer also as a Q8_0 GGUF."""
    root = tmp_path_factory.mktemp("flux")
    pipe = tiny.tiny_flux()
    files = _write(root, pipe)
    files.parts["gguf"] = tiny.write_gguf_denoiser(pipe.transformer.state_dict(), root / "parts" / "flux-Q8_0.gguf")
    return files


@pytest.fixture(scope="session")
def wan(tmp_path_factory) -> Files:
    """A tiny Wan-style text-to-video pipeline (16x16 frames); its VAE file in diffusers layout."""
    root = tmp_path_factory.mktemp("wan")
    pipe = tiny.tiny_wan()
    folder = root / "pipeline"
    pipe.save_pretrained(folder)
    parts = tiny.save_parts(pipe, root / "parts", ldm=False)
    return Files(folder=folder, config=tiny.config_only(folder, root / "config"), parts=parts, loras=())

