"""The environment check behind ``corral env``: each plugin's backends (importable? which version? which
acceleration?), the GPUs found, and for every category that nothing installed can load, the exact
``pip install`` that fixes it.

This is the one place outside a load that imports backend libraries (llama_cpp, torch): asking them what
they were built with is the point of the check.
"""

from __future__ import annotations

import platform
import re
import sys
from typing import TYPE_CHECKING

import attrs
from attrs import frozen

from corral import known
from corral.driver import backend_status
from corral.records import BackendStatus, Category, Format, GpuInfo

if TYPE_CHECKING:
    from corral.plugins import PluginHost

#: Each category with the formats its first-party plugins load; each pair is checked on its own.
ROUTES: tuple[tuple[Category, Format], ...] = (
    (Category.CHAT, Format.GGUF),
    (Category.CHAT, Format.HF_DIR),
    (Category.MULTIMODAL, Format.GGUF),
    (Category.MULTIMODAL, Format.HF_DIR),
    (Category.TEXT_GENERATION, Format.HF_DIR),
    (Category.EMBEDDING, Format.HF_DIR),
    (Category.RERANK, Format.HF_DIR),
    (Category.IMAGE, Format.DIFFUSERS_DIR),
    (Category.TTS, Format.KOKORO),
)


@frozen
class BackendEnv:
    """One registered class of a plugin and what its environment check found."""

    kind: str  # driver | source | exporter | gpu-vendor
    status: BackendStatus


@frozen
class PluginEnv:
    name: str
    distribution: str | None
    version: str | None
    builtin: bool
    #: ok | broken (failed to load) | unusable (a backend is missing)
    status: str
    error: str | None = None
    backends: tuple[BackendEnv, ...] = ()


@frozen
class CategoryEnv:
    category: Category
    format: Format
    usable: bool
    drivers: tuple[str, ...] = ()
    install: str | None = None
    problem: str | None = None


@frozen
class HubEnv:
    source: str
    usable: bool
    install: str | None = None


@frozen
class EnvReport:
    python: str
    platform: str
    plugins: tuple[PluginEnv, ...]
    gpus: tuple[GpuInfo, ...]
    categories: tuple[CategoryEnv, ...]
    #: Hubs with no usable source plugin, with the install line.
    hubs: tuple[HubEnv, ...] = ()


def llama_cpp_acceleration() -> tuple[str, ...]:
    """What llama-cpp-python was built with: its ggml backends and CPU features, and GPU offload."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    found = []
    for group in re.split(r"\|\s*(?=[A-Za-z][\w-]* : )", info):
        name, _, rest = group.partition(" : ")
        name = name.strip(" |")
        if not name:
            continue
        if name == "CPU":
            features = [f.split("=")[0].strip() for f in rest.split("|") if f.strip().endswith("= 1")]
            keep = [f for f in features if f in ("AVX2", "AVX512", "NEON", "SVE", "AMX_INT8", "ARM_FMA", "REPACK")]
            found.append("CPU" + (f" ({', '.join(keep)})" if keep else ""))
        else:
            found.append(name)
    found.append("GPU offload" if llama_cpp.llama_supports_gpu_offload() else "CPU only")
    return tuple(found)


def torch_acceleration() -> tuple[str, ...]:
    """torch's devices: CUDA (or ROCm) with its GPUs, Apple MPS, Intel XPU, else CPU only."""
    import torch

    found = []
    if torch.cuda.is_available():
        kind = f"ROCm {torch.version.hip}" if getattr(torch.version, "hip", None) else f"CUDA {torch.version.cuda}"
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        found.append(f"{kind}: {', '.join(names)}")
    elif getattr(torch.version, "cuda", None):
        found.append(f"built for CUDA {torch.version.cuda}, no CUDA device available")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("MPS")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found.append("XPU")
    if not any(not f.startswith("built for") for f in found):
        found.append("CPU only")
    return tuple(found)


#: Import name -> the function that reports its acceleration.
ACCELERATION_PROBES = {"llama_cpp": llama_cpp_acceleration, "torch": torch_acceleration}


def _with_acceleration(status: BackendStatus, requires: tuple[str, ...]) -> BackendStatus:
    """Add what the backend was built with, unless the plugin's own check already said."""
    if not status.available or status.acceleration:
        return status
    for module in requires:
        probe = ACCELERATION_PROBES.get(module.split(".")[0])
        if probe is None:
            continue
        try:
            return attrs.evolve(status, acceleration=probe())
        except Exception as exc:  # noqa: BLE001 - a backend that imports badly is reported, not fatal
            return attrs.evolve(
                status, available=False, problem=f"importing {module} failed: {type(exc).__name__}: {exc}"
            )
    return status


def check_class(cls: type, kind: str) -> BackendEnv:
    """Run one registered class's environment check; a check that raises is reported as unusable."""
    try:
        if kind == "gpu-vendor":
            status = backend_status(cls.name, cls.distribution, tuple(cls.requires))
        else:
            status = cls.check()
        status = _with_acceleration(status, tuple(getattr(cls, "requires", ())))
    except Exception as exc:  # noqa: BLE001
        status = BackendStatus(
            name=cls.name, available=False, problem=f"check failed: {type(exc).__name__}: {exc}",
            install=f"pip install {cls.distribution}" if cls.distribution else None,
        )  # fmt: skip
    return BackendEnv(kind=kind, status=status)


def _installed(distribution: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _categories(host: PluginHost, usable: dict[type, bool]) -> list[CategoryEnv]:
    out = []
    for category, fmt in ROUTES:
        drivers = [d for d in host.drivers if category in d.categories and fmt in d.formats]
        ok = tuple(d.name for d in drivers if usable.get(d))
        if ok:
            out.append(CategoryEnv(category=category, format=fmt, usable=True, drivers=ok))
            continue
        broken = drivers[0] if drivers else None
        dist = broken.distribution if broken else known.driver_distribution(category, fmt)
        if broken:
            problem = f"the {broken.name} driver's backend is missing"
        elif dist and _installed(dist):
            problem = f"{dist} is installed but registers no driver for {category} {fmt} (is it disabled?)"
        else:
            problem = f"no installed plugin loads {category} models in {fmt} format"
        out.append(CategoryEnv(category=category, format=fmt, usable=False,
                               install=f"pip install {dist}" if dist else None, problem=problem))
    return out


def environment(host: PluginHost) -> EnvReport:
    """Check every installed plugin's backends, read the GPUs, and say what each category needs."""
    from corral.monitor import read_gpus

    kinds = (("drivers", "driver"), ("sources", "source"), ("exporters", "exporter"), ("gpu_vendors", "gpu-vendor"))
    usable: dict[type, bool] = {}
    per_plugin: dict[str, list[BackendEnv]] = {}
    for attr, kind in kinds:
        for cls in getattr(host, attr):
            env = check_class(cls, kind)
            usable[cls] = env.status.available
            per_plugin.setdefault(host.owners.get(cls, "?"), []).append(env)
    plugins = []
    for info in host.plugin_infos():
        backends = tuple(per_plugin.get(info.name, ()))
        if info.error:
            state = "broken"
        elif any(not b.status.available for b in backends):
            state = "unusable"
        else:
            state = "ok"
        plugins.append(PluginEnv(
            name=info.name, distribution=info.distribution, version=info.version, builtin=info.builtin,
            status=state, error=info.error, backends=backends,
        ))  # fmt: skip
    hubs = []
    for source, dist in known.SOURCES.items():
        cls = host.source(source)
        ok = cls is not None and usable.get(cls, False)
        hubs.append(HubEnv(source=source, usable=ok, install=None if ok else f"pip install {dist}"))
    return EnvReport(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        plugins=tuple(plugins),
        gpus=tuple(read_gpus(host)),
        categories=tuple(_categories(host, usable)),
        hubs=tuple(hubs),
    )
