"""Fast start: `corral --help` and `corral ls` never import a heavy backend, plugins installed or not."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "llama_cpp", "sentence_transformers", "kokoro", "modelscope", "transformers")

PROBE = """
import sys
from corral.cli import build_cli
try:
    build_cli()(args=sys.argv[1:], prog_name="corral")
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["ls"], ["ls", "--json"], ["plugins"]])
def test_no_heavy_imports(args, tmp_path):
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home")}
    env.pop("CORRAL_LOAD_PLUGINS", None)  # every installed plugin loads, as for a user
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    line = [l for l in out.stderr.splitlines() if l.startswith("HEAVY:")][-1]
    assert line == "HEAVY:", f"corral {' '.join(args)} imported {line[6:]}"


LS_PROBE = """
import sys
from corral.cli import build_cli
try:
    build_cli()(args=["ls"], prog_name="corral")
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.startswith("corral.cli.") or m == "corral.plugins"
                or m.startswith("corral_"))
print("LOADED:" + ",".join(loaded), file=sys.stderr)
"""


def test_ls_imports_only_its_own_command_module_and_no_plugin(tmp_path):
    env = {**os.environ, "CORRAL_HOME": str(tmp_path / "home")}
    env.pop("CORRAL_LOAD_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", LS_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = [l for l in out.stderr.splitlines() if l.startswith("LOADED:")][-1][7:].split(",")
    # base and examples (the --help examples table, plain data) are shared by every command.
    assert loaded == ["corral.cli.base", "corral.cli.examples", "corral.cli.library_cmds"]


def test_every_core_command_is_mapped_to_its_module():
    import importlib

    from corral.cli import COMMAND_MODULES, MODULES

    defined = {c.name: module for module in MODULES
               for c in importlib.import_module(f"corral.cli.{module}").COMMANDS}
    assert COMMAND_MODULES == defined
