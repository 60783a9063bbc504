"""The NVIDIA vendor against the real NVML: on a machine without an NVIDIA GPU, NVML itself fails to start
and the probe answers cleanly with no GPUs; on a machine with one, it reads them."""

from __future__ import annotations

import json

import pytest

pynvml = pytest.importorskip("pynvml")

import corral_nvidia  # noqa: E402
from corral_nvidia import NvidiaVendor  # noqa: E402


def nvml_starts() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


HAS_GPU = nvml_starts()


@pytest.fixture
def nvidia_host(host):
    host.pm.register(corral_nvidia, name="nvidia")
    host.collect_registrations()
    return host


def test_registers_without_importing_nvml(nvidia_host):
    assert NvidiaVendor in nvidia_host.gpu_vendors
    assert NvidiaVendor.requires == ("pynvml",)


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_no_gpu_means_nvml_fails_and_probe_is_empty(nvidia_host, run):
    with pytest.raises(pynvml.NVMLError) as info:
        pynvml.nvmlInit()
    # no library (no driver installed) or a library without a loaded kernel driver
    assert isinstance(info.value, (pynvml.NVMLError_LibraryNotFound, pynvml.NVMLError_DriverNotLoaded))
    assert NvidiaVendor().probe() == []
    status = json.loads(run("monitor", "--once", "--json").stdout)
    assert status["gpus"] == []
    assert "GPU" not in run("monitor", "--once").stdout  # no GPU section at all
    env = json.loads(run("env", "--json").stdout)
    plugin = next(p for p in env["plugins"] if p["name"] == "nvidia")
    assert plugin["status"] == "ok" and plugin["backends"][0]["status"]["version"]
    assert env["gpus"] == []


def test_missing_nvml_module_is_no_gpu(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    assert NvidiaVendor().probe() == []


@pytest.mark.skipif(not HAS_GPU, reason="needs an NVIDIA GPU and driver")
def test_reads_real_gpus(nvidia_host, run):
    gpus = NvidiaVendor().probe()
    assert gpus and [g.index for g in gpus] == list(range(len(gpus)))
    for gpu in gpus:
        assert gpu.vendor == "nvidia" and gpu.name
        assert gpu.vram_total and 0 <= gpu.vram_used <= gpu.vram_total
        assert gpu.temperature is None or 0 < gpu.temperature < 120
        assert gpu.utilization is None or 0 <= gpu.utilization <= 100
    status = json.loads(run("monitor", "--once", "--json").stdout)
    assert [g["name"] for g in status["gpus"]] == [g.name for g in gpus]
    from corral.testing import free_memory

    assert free_memory()[1] > 0
