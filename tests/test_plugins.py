"""Plugin loading: entry points one by one, failures recorded, selection env vars, isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import plugins_for_tests as tp
from corral.plugins import build_host


def make_dist(root: Path, dist: str, ep_name: str, module: str, source: str) -> None:
    """An installed distribution on a path entry: module + dist-info with a `corral` entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[corral]\n{ep_name} = {module}\n")


GOOD = """
from corral import hookimpl
from corral.driver import Driver
from corral.records import Category, Format

class GoodDriver(Driver):
    name = "good"
    distribution = "corral-good"
    categories = frozenset({Category.TTS})
    formats = frozenset({Format.KOKORO})

@hookimpl
def register_drivers(register):
    register(GoodDriver)
"""

BROKEN = """
raise ImportError("this plugin is broken on purpose")
"""


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    make_dist(root, "corral-good", "good", "corral_good_plugin", GOOD)
    make_dist(root, "corral-broken", "broken", "corral_broken_plugin", BROKEN)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("CORRAL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("CORRAL_DISABLE_PLUGINS", raising=False)
    return root


def only_test_plugins(monkeypatch, *names):
    monkeypatch.setenv("CORRAL_LOAD_PLUGINS", ",".join(names))


def test_broken_entry_point_is_recorded_and_others_load(plugin_path, monkeypatch):
    only_test_plugins(monkeypatch, "good", "broken")
    host = build_host()
    assert [d.name for d in host.drivers] == ["good"]
    assert "broken" in host.failures
    assert "this plugin is broken on purpose" in host.failures["broken"].error
    infos = {i.name: i for i in host.plugin_infos()}
    assert infos["good"].drivers == ("good",)
    assert infos["good"].distribution == "corral-good"
    assert infos["broken"].error


def test_load_and_disable_env_vars(plugin_path, monkeypatch):
    only_test_plugins(monkeypatch, "good")
    assert "broken" not in build_host().failures
    monkeypatch.setenv("CORRAL_LOAD_PLUGINS", "good,broken")
    monkeypatch.setenv("CORRAL_DISABLE_PLUGINS", "good")
    host = build_host()
    assert host.drivers == [] and "broken" in host.failures


def test_strict_mode_reraises(plugin_path, monkeypatch):
    only_test_plugins(monkeypatch, "broken")
    monkeypatch.setenv("CORRAL_STRICT_PLUGINS", "1")
    with pytest.raises(ImportError, match="broken on purpose"):
        build_host()


def test_failing_registration_drops_the_whole_plugin():
    host = build_host(entry_points=False, plugins=[tp.bad_register_plugin, tp.source_plugin])
    assert host.drivers == []
    assert "boom while registering" in host.failures["bad_register_plugin"].error
    assert [s.name for s in host.sources] == ["localhub"]


def test_registering_a_non_driver_is_a_plugin_failure():
    class wrong:  # noqa: N801
        @staticmethod
        @__import__("corral").hookimpl
        def register_drivers(register):
            register(object)

    host = build_host(entry_points=False, plugins=[wrong])
    assert "not a Driver subclass" in host.failures["wrong"].error


def test_crashing_detector_does_not_break_detection(host, tmp_path):
    from factories import write_tiny_gguf

    host = build_host(entry_points=False, plugins=[tp.crashing_detector])
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    detection = host.first_result("detect_model", path=path)
    assert detection.format.value == "gguf"
    assert "ZeroDivisionError" in host.failures["crashing_detector"].error


def _cli(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def test_cli_shows_broken_plugin_and_keeps_working(plugin_path, tmp_path):
    env = {
        "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
        "CORRAL_HOME": str(tmp_path / "home"),
        "CORRAL_LOAD_PLUGINS": "good,broken",
    }
    shown = _cli(["plugins", "--json"], env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    infos = {i["name"]: i for i in json.loads(shown.stdout)}
    assert infos["broken"]["error"].startswith("failed to load: ImportError")
    assert infos["good"]["drivers"] == ["good"]
    text = _cli(["plugins"], env, tmp_path)
    assert "broken (corral-broken 1.0): FAILED" in text.stdout
    listed = _cli(["ls"], env, tmp_path)
    assert listed.returncode == 0 and "No models yet" in listed.stdout


def test_trace_env_var_prints_hook_calls(tmp_path):
    from factories import write_tiny_gguf

    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    env = {"CORRAL_HOME": str(tmp_path / "home"), "CORRAL_TRACE_HOOKS": "1", "CORRAL_LOAD_PLUGINS": ""}
    out = _cli(["import", str(model)], env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "corral.detect.builtin.detect_model(path=" in out.stderr


def test_exporters_gpu_vendors_and_commands_register(home):
    from click.testing import CliRunner

    from corral.cli import build_cli
    from corral.plugins import set_host

    host = build_host(entry_points=False, plugins=[tp.extras_plugin])
    assert [e.name for e in host.exporters] == ["null-export"]
    assert host.gpu_vendors[0]().probe()[0].name == "Fake GPU"
    info = next(i for i in host.plugin_infos() if i.name == "extras_plugin")
    assert info.exporters == ("null-export",) and info.gpu_vendors == ("fakegpu",)
    set_host(host)
    try:
        result = CliRunner().invoke(build_cli(), ["hello"])
    finally:
        set_host(None)
    assert result.exit_code == 0 and result.output.strip() == "hello from a plugin"


def test_failing_register_commands_keeps_the_cli(home):
    from click.testing import CliRunner

    from corral import hookimpl
    from corral.cli import build_cli
    from corral.plugins import set_host

    class bad_commands:  # noqa: N801
        @staticmethod
        @hookimpl
        def register_commands(cli):
            raise RuntimeError("no commands today")

    host = build_host(entry_points=False, plugins=[bad_commands])
    set_host(host)
    try:
        listed = CliRunner().invoke(build_cli(), ["ls"])  # a core command: the plugins' commands not needed
        helped = CliRunner().invoke(build_cli(), ["--help"])  # every command, the plugins' ones included
    finally:
        set_host(None)
    assert listed.exit_code == 0 and helped.exit_code == 0 and "ls " in helped.output
    assert "no commands today" in host.failures["bad_commands"].error
