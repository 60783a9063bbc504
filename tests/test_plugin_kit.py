"""The plugin author kit: ``corral plugin new`` renders plugin_template/ into a package that installs,
passes its own tests (the conformance suite), shows in ``corral plugins`` and answers through the CLI;
and the conformance suite fails plugins that break its contract."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KIT_PLUGINS = Path(__file__).resolve().parent / "kit_plugins"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corral(*args, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real ``corral`` command in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "corral", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def fake_install(site: Path, distribution: str, entry_point: str, module: str) -> None:
    """Metadata of an installed distribution with one ``corral`` entry point (its module lives elsewhere
    on the path): what ``importlib.metadata`` reads to find plugins."""
    info = site / f"{distribution.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[corral]\n{entry_point} = {module}\n")


def outcomes(report: str) -> dict[str, str]:
    """``Class::test`` -> PASSED / FAILED / ERROR / SKIPPED (with the reason) from pytest's ``-rA`` lines."""
    found = {}
    for line in report.splitlines():
        match = re.match(r"^(PASSED|FAILED|ERROR) \S+?::(\w+::\w+)(?: - (.*))?$", line)
        if match:
            found[match[2]] = f"{match[1]} {match[3] or ''}".strip()
    return found


# --- the template and `corral plugin new` ------------------------------------------------------------


def test_embedded_template_matches_plugin_template():
    sync = load_script("sync_plugin_template")
    from corral.cli.template_files import FILES

    assert FILES == sync.template_files(), "run: python scripts/sync_plugin_template.py"
    assert sync.main(["--check"]) == 0, "run: python scripts/sync_plugin_template.py"


def test_example_driver_is_under_100_lines():
    lines = (ROOT / "plugin_template" / "corral_NAME" / "__init__.py").read_text().splitlines()
    assert len(lines) < 100


def test_plugin_new_renders_every_name(run, tmp_path):
    out = tmp_path / "corral-my-backend"
    result = run("plugin", "new", "My_Backend", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["short"], data["distribution"], data["module"]) == ("my-backend", "corral-my-backend", "corral_my_backend")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "corral_my_backend/__init__.py",
        "pyproject.toml",
        "tests/test_conformance.py",
        "tests/test_driver.py",
    ]
    for path in out.rglob("*.*"):
        assert "NAME" not in path.read_text(), f"{path} keeps a placeholder"
    project = tomllib.loads((out / "pyproject.toml").read_text())
    assert project["project"]["name"] == "corral-my-backend"
    assert project["project"]["entry-points"]["corral"] == {"my-backend": "corral_my_backend"}
    source = (out / "corral_my_backend" / "__init__.py").read_text()
    compile(source, "__init__.py", "exec")
    assert "class MyBackendDriver(Driver)" in source and 'name = "my-backend"' in source
    assert 'plugin = "my-backend"' in (out / "tests" / "test_conformance.py").read_text()


def test_plugin_new_refuses_bad_names_and_used_folders(run, tmp_path):
    result = run("plugin", "new", "9lives", "--out", tmp_path / "x")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines() == [
        "Error: '9lives' is not a plugin name: use lower-case letters, digits and dashes, "
        "starting with a letter (e.g. my-backend)"
    ]
    assert not (tmp_path / "x").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    result = run("plugin", "new", "fine", "--out", used)
    assert result.exit_code != 0
    assert "already exists and is not an empty folder" in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in used.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "corral-home") == ["used"]  # nothing half-written


def test_rendered_plugin_installs_passes_its_tests_and_answers_through_the_cli(tmp_path):
    """Render with the real CLI, install (a wheel, built and installed by pip), run the plugin's own tests,
    then list it and chat with a model through it."""
    from corral.testing import write_tiny_gguf

    pytest.importorskip("setuptools", reason="pip builds the plugin with this environment's setuptools")
    package, site, home = tmp_path / "corral-kitdemo", tmp_path / "site", tmp_path / "home"
    # pip --target keeps the plugin out of the shared environment: only these processes see it.
    env = {**os.environ, "CORRAL_HOME": str(home), "PYTHONPATH": str(site)}
    for name in ("CORRAL_LOAD_PLUGINS", "CORRAL_DISABLE_PLUGINS", "CORRAL_STRICT_PLUGINS"):
        env.pop(name, None)
    made = corral("plugin", "new", "kitdemo", "--out", package, env=env)
    assert made.returncode == 0, made.stderr
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", site, package],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "corral_kitdemo" / "__init__.py").exists()

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", "tests"],
        capture_output=True, text=True, env=env, cwd=package, timeout=600,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    ran = outcomes(tests.stdout)
    for name in ("test_registers_without_heavy_imports", "test_declares_capabilities", "test_round_trip",
                 "test_bad_model_path_raises_corral_error", "test_reported_by_cli"):  # fmt: skip
        assert ran[f"TestConformance::{name}"] == "PASSED", ran

    listed = corral("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    info = {p["name"]: p for p in json.loads(listed.stdout)}["kitdemo"]
    assert (info["distribution"], info["drivers"], info["error"]) == ("corral-kitdemo", ["kitdemo"], None)

    only = {**env, "CORRAL_LOAD_PLUGINS": "kitdemo"}  # other installed GGUF drivers stay out of the way
    model = write_tiny_gguf(tmp_path / "models" / "tiny.gguf")
    imported = corral("import", model, "--name", "tiny", "--json", env=only)
    assert imported.returncode == 0, imported.stderr
    chat = corral("chat", "tiny", "how are you?", env=only)
    assert (chat.returncode, chat.stdout, chat.stderr) == (0, "Hello, how are you?\n", "")
    assert corral("settings", "tiny", "--set", "greeting=Howdy", env=only).returncode == 0
    assert corral("chat", "tiny", "how are you?", env=only).stdout == "Howdy, how are you?\n"


# --- the conformance suite fails plugins that break the contract -------------------------------------


def test_conformance_suite_fails_broken_plugins(tmp_path):
    """Kit plugins (tests/kit_plugins) that each break one rule: the suite passes the good one and fails
    each broken one on exactly the rule it breaks."""
    site = tmp_path / "site"
    for short in ("good", "heavy", "nocaps", "greedy", "leaky", "mute"):
        fake_install(site, f"corral-kit-{short}", f"kit-{short}", f"corral_kit_{short}")
    # The heavy-import check reads module names; a stand-in named like a backend is what it must catch.
    (site / "kokoro").mkdir()
    (site / "kokoro" / "__init__.py").write_text('"""Stand-in for a heavy backend library."""\n')
    cases = tmp_path / "test_kit_cases.py"
    cases.write_text((KIT_PLUGINS / "kit_cases.py").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(KIT_PLUGINS)]), "COLUMNS": "4000"}
    env.pop("CORRAL_LOAD_PLUGINS", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", cases.name],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    ran = outcomes(out.stdout)
    assert ran, out.stdout[-3000:] + out.stderr[-2000:]
    failed = {test for test, outcome in ran.items() if not outcome.startswith("PASSED")}
    assert failed == {
        "TestHeavy::test_registers_without_heavy_imports",
        "TestNocaps::test_declares_capabilities",
        "TestNocaps::test_round_trip",
        "TestNocaps::test_bad_model_path_raises_corral_error",
        "TestGreedy::test_detection_ignores_foreign_files",
        "TestGreedy::test_detection_errors_are_corral_errors",
        "TestLeaky::test_bad_model_path_raises_corral_error",
        "TestMute::test_round_trip",
        "TestAbsent::test_registers_without_heavy_imports",
        "TestAbsent::test_declares_capabilities",
        "TestAbsent::test_round_trip",
        "TestAbsent::test_bad_model_path_raises_corral_error",
        "TestAbsent::test_gpu_vendors_probe",
        "TestAbsent::test_reported_by_cli",
        "TestAbsent::test_detection_ignores_foreign_files",
        "TestAbsent::test_detection_errors_are_corral_errors",
    }, out.stdout[-6000:]
    assert "imported kokoro" in ran["TestHeavy::test_registers_without_heavy_imports"]
    assert "categories" in ran["TestNocaps::test_declares_capabilities"]
    assert "must return None" in ran["TestGreedy::test_detection_ignores_foreign_files"]
    assert "struct.error" in ran["TestGreedy::test_detection_errors_are_corral_errors"]
    assert "FileNotFoundError" in ran["TestLeaky::test_bad_model_path_raises_corral_error"]
    assert "not a ChatResult" in ran["TestMute::test_round_trip"]
    assert "no entry point 'kit-not-installed'" in ran["TestAbsent::test_registers_without_heavy_imports"]
    good = {test: outcome for test, outcome in ran.items() if test.startswith("TestGood::")}
    assert set(good.values()) == {"PASSED"} and len(good) == 5, good
