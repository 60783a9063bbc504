"""AMD and Intel GPUs from a fake sysfs tree built here, laid out as the kernel lays out the real one."""

from __future__ import annotations

import json
from pathlib import Path

import corral_sysfs_gpu
from corral_sysfs_gpu import SysfsGpuVendor, read_gpus

GiB = 1 << 30


def device(root: Path, slot: str, files: dict[str, str]) -> Path:
    """A PCI device folder under ``root/devices`` with the given files."""
    path = root / "devices" / slot
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text + "\n")
    return path


def card(drm: Path, name: str, target: Path) -> None:
    (drm / name).mkdir(parents=True)
    (drm / name / "device").symlink_to(target)  # sysfs links each card to its PCI device


def fake_sysfs(tmp: Path) -> Path:
    drm = tmp / "class" / "drm"
    amd = device(tmp, "0000:03:00.0", {
        "vendor": "0x1002", "device": "0x744c",
        "uevent": "DRIVER=amdgpu\nPCI_CLASS=30000\nPCI_ID=1002:744C\nPCI_SLOT_NAME=0000:03:00.0",
        "product_name": "AMD Radeon RX 7900 XTX",
        "mem_info_vram_total": str(24 * GiB), "mem_info_vram_used": str(3 * GiB),
        "gpu_busy_percent": "17", "hwmon/hwmon4/temp1_input": "48000",
    })  # fmt: skip
    intel = device(tmp, "0000:00:02.0", {
        "vendor": "0x8086", "uevent": "DRIVER=i915\nPCI_ID=8086:56A0\nPCI_SLOT_NAME=0000:00:02.0",
    })  # fmt: skip
    nvidia = device(tmp, "0000:01:00.0", {"vendor": "0x10de", "uevent": "DRIVER=nvidia\nPCI_ID=10DE:2684"})
    virtual = device(tmp, "0000:00:01.0", {"vendor": "0x1234", "uevent": "DRIVER=bochs-drm"})
    card(drm, "card0", nvidia)
    card(drm, "card1", amd)
    card(drm, "card2", intel)
    card(drm, "card10", virtual)
    (drm / "card2" / "lmem_total_bytes").write_text(str(16 * GiB) + "\n")  # i915 discrete memory
    (drm / "card1-DP-1").mkdir()  # a connector, not a GPU
    (drm / "renderD128").mkdir()  # a render node of card1
    (drm / "version").write_text("drm 1.1.0 20060810\n")
    return drm


def test_reads_amd_and_intel_only(tmp_path):
    gpus = read_gpus(fake_sysfs(tmp_path))
    assert [(g.vendor, g.index) for g in gpus] == [("amd", 0), ("intel", 0)]
    amd, intel = gpus
    assert amd.name == "AMD Radeon RX 7900 XTX"
    assert (amd.vram_total, amd.vram_used) == (24 * GiB, 3 * GiB)
    assert (amd.temperature, amd.utilization) == (48.0, 17.0)
    assert intel.name == "Intel GPU [8086:56a0] (i915)"  # no product_name: the PCI id and the driver
    assert intel.vram_total == 16 * GiB and intel.vram_used is None and intel.temperature is None


def test_cards_are_numbered_per_vendor(tmp_path):
    drm = tmp_path / "drm"
    for n in range(3):
        card(drm, f"card{n}", device(tmp_path, f"0000:0{n}:00.0", {"vendor": "0x1002"}))
    gpus = read_gpus(drm)
    assert [g.index for g in gpus] == [0, 1, 2]
    assert all(g.name == "AMD GPU" and g.vram_total is None for g in gpus)


def test_no_sysfs_or_garbage_is_no_gpu(tmp_path):
    assert read_gpus(tmp_path / "missing") == []
    drm = tmp_path / "drm"
    card(drm, "card0", device(tmp_path, "0000:09:00.0", {"vendor": "not hex", "mem_info_vram_total": "x"}))
    assert read_gpus(drm) == []
    card(drm, "card1", device(tmp_path, "0000:0a:00.0", {"vendor": "0x1002", "mem_info_vram_total": "lots"}))
    (gpu,) = read_gpus(drm)
    assert gpu.vram_total is None


def test_this_machine(tmp_path):
    gpus = SysfsGpuVendor().probe()  # the real /sys/class/drm (none in a container without GPUs)
    assert all(g.vendor in ("amd", "intel") for g in gpus)


def test_monitor_env_and_free_memory_through_the_plugin(tmp_path, host, run, monkeypatch):
    monkeypatch.setenv("CORRAL_SYSFS_ROOT", str(fake_sysfs(tmp_path)))
    host.pm.register(corral_sysfs_gpu, name="sysfs-gpu")
    host.collect_registrations()
    status = json.loads(run("monitor", "--once", "--json").stdout)
    assert [g["name"] for g in status["gpus"]] == ["AMD Radeon RX 7900 XTX", "Intel GPU [8086:56a0] (i915)"]
    text = run("monitor", "--once").stdout
    assert "GPU 0" in text and "48 °C" in text and "3.2 / 25.8 GB" in text
    assert len(json.loads(run("env", "--json").stdout)["gpus"]) == 2
    from corral.testing import free_memory

    assert free_memory()[1] == 21 * GiB + 16 * GiB  # AMD's free part plus the Intel card's total
