"""`corral env` and `corral monitor`: backend checks with install lines, GPU readings through vendor
plugins, memory warnings, and the install message when a plugin is hidden."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

import plugins_for_tests as tp
from factories import write_tiny_gguf

from corral import known
from corral.driver import GpuVendor
from corral.monitor import system_status, warn_threshold
from corral.records import Category, GpuInfo


def cli(*args: str, env: dict | None = None, home=None) -> subprocess.CompletedProcess:
    """The real `corral` in a fresh process with every installed plugin, as a user runs it."""
    full = {**os.environ, **(env or {})}
    full.pop("CORRAL_LOAD_PLUGINS", None)
    if home is not None:
        full["CORRAL_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=300)  # fmt: skip


def installed_plugins() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="corral")}


class BusyGpu(GpuVendor):
    name = "busygpu"
    distribution = "corral-busygpu"

    def probe(self):
        return [GpuInfo(vendor="busy", index=0, name="Busy GPU", vram_total=100 << 20, vram_used=97 << 20,
                        temperature=71.0, utilization=99.0)]  # fmt: skip


class BrokenGpu(GpuVendor):
    name = "brokengpu"
    distribution = "corral-brokengpu"

    def probe(self):
        raise RuntimeError("the vendor library crashed")


# --- monitor ------------------------------------------------------------------------------------------


def test_system_status_reads_this_machine(host):
    import psutil

    status = system_status(host)
    assert status.memory_total == psutil.virtual_memory().total
    assert 0 < status.memory_used < status.memory_total
    assert 0 <= status.cpu_percent <= 100
    assert status.gpus == ()  # no vendor plugin in a fresh host
    assert status.warn_percent == 90.0


def test_monitor_once_json(run):
    out = run("monitor", "--once", "--json")
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    for key in ("cpu_percent", "memory_total_bytes", "memory_used_bytes", "memory_percent", "gpus", "warnings"):
        assert key in data
    text = run("monitor", "--once").stdout
    assert "CPU" in text and "Memory" in text and "GPU" not in text  # no GPU: no GPU section


def test_memory_warning_threshold(run, monkeypatch):
    monkeypatch.setenv("CORRAL_MEMORY_WARN", "0.01")  # any machine uses more than this
    data = json.loads(run("monitor", "--once", "--json").stdout)
    assert data["warn_percent"] == 0.01 and data["warnings"] and data["warnings"][0].startswith("memory")
    assert "WARNING: memory" in run("monitor", "--once").stdout
    # the option wins over the environment
    data = json.loads(run("monitor", "--once", "--json", "--warn", "100").stdout)
    assert data["warn_percent"] == 100 and data["warnings"] == []
    monkeypatch.setenv("CORRAL_MEMORY_WARN", "lots")
    out = run("monitor", "--once")
    assert out.exit_code != 0 and "CORRAL_MEMORY_WARN" not in out.stdout
    assert "'lots' is not a number" in out.stderr and "Traceback" not in out.output


def test_warn_threshold_bounds(monkeypatch):
    monkeypatch.delenv("CORRAL_MEMORY_WARN", raising=False)
    assert warn_threshold() == 90.0
    assert warn_threshold("85%") == 85.0
    from corral.errors import InvalidSetting

    with pytest.raises(InvalidSetting):
        warn_threshold(150)


def test_gpus_from_vendor_plugins_with_warnings(run, host):
    host.gpu_vendors.extend([BusyGpu, BrokenGpu])  # a broken vendor is skipped, never fatal
    data = json.loads(run("monitor", "--once", "--json").stdout)
    assert [g["name"] for g in data["gpus"]] == ["Busy GPU"]
    assert any(w.startswith("GPU 0 (Busy GPU) memory 97%") for w in data["warnings"])
    text = run("monitor", "--once").stdout
    assert "Busy GPU" in text and "71 °C" in text and "busy 99 %" in text


# --- env ----------------------------------------------------------------------------------------------


def test_env_without_plugins_names_every_install(run):
    data = json.loads(run("env", "--json").stdout)
    assert [p["name"] for p in data["plugins"]] == ["corral.builtin", "corral.detect.builtin"]
    assert data["gpus"] == []
    for row in data["categories"]:
        assert row["usable"] is False
        dist = known.driver_distribution(Category(row["category"]), row["format"])
        assert row["install"] == (f"pip install {dist}" if dist else None)
    assert {h["source"]: h["install"] for h in data["hubs"]} == {
        "huggingface": "pip install corral-huggingface", "modelscope": "pip install corral-modelscope"}
    text = run("env").stdout
    assert "pip install corral-llamacpp" in text and "GPUs: none found" in text


def test_env_reports_a_missing_backend(run, host):
    host.pm.register(tp.missing_plugin, name="missing")
    host.collect_registrations()
    data = json.loads(run("env", "--json").stdout)
    plugin = next(p for p in data["plugins"] if p["name"] == "missing")
    assert plugin["status"] == "unusable"
    backend = plugin["backends"][0]["status"]
    assert backend["available"] is False and backend["install"] == "pip install corral-missing"
    row = next(r for r in data["categories"] if (r["category"], r["format"]) == ("embedding", "hf-dir"))
    assert row["install"] == "pip install corral-missing" and "backend is missing" in row["problem"]


def test_env_json_lists_every_installed_plugin(tmp_path):
    out = cli("env", "--json", home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    listed = {p["name"]: p for p in data["plugins"]}
    assert installed_plugins() <= set(listed)
    for plugin in listed.values():
        assert plugin["status"] in ("ok", "unusable", "broken")
        for backend in plugin["backends"]:
            assert backend["status"]["available"] or backend["status"]["install"]
    if "llamacpp" in listed and listed["llamacpp"]["status"] == "ok":
        driver = listed["llamacpp"]["backends"][0]["status"]
        assert driver["version"] and driver["acceleration"]  # what llama.cpp was built with


# the plugin to hide, how to make a model it loads, and the command that loads it
HIDDEN = {
    "llamacpp": ("corral-llamacpp", lambda tmp, _: write_tiny_gguf(tmp / "tiny.gguf"), ["chat", "tiny", "hello"],
                 ("chat", "gguf")),
    "sentence-transformers": ("corral-sentence-transformers", lambda tmp, minilm: minilm,
                              ["embed", "model", "hello"], ("embedding", "hf-dir")),
}  # fmt: skip


@pytest.mark.parametrize("plugin", sorted(HIDDEN))
def test_hidden_plugin_gives_the_install_message(plugin, tmp_path, request):
    if plugin not in installed_plugins():
        pytest.skip(f"the {plugin} plugin is not installed")
    dist, make, command, route = HIDDEN[plugin]
    minilm = request.getfixturevalue("minilm_path") if plugin == "sentence-transformers" else None
    home = tmp_path / "home"
    path = make(tmp_path, minilm)
    assert cli("import", path, "--name", command[1], home=home).returncode == 0

    # Every plugin that serves the same route goes too (corral-llama-server also loads GGUF chat models).
    others = {"llamacpp": ",llama-server"}.get(plugin, "")
    hidden = {"CORRAL_DISABLE_PLUGINS": plugin + others}
    env = json.loads(cli("env", "--json", env=hidden, home=home).stdout)
    assert plugin not in {p["name"] for p in env["plugins"]}
    row = next(r for r in env["categories"] if (r["category"], r["format"]) == route)
    assert row["usable"] is False and row["install"] == f"pip install {dist}"

    out = cli(*command, env=hidden, home=home)
    assert out.returncode == 6, out.stderr  # PluginMissing
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert row["install"] in lines[0]  # the very same install line as `corral env`
