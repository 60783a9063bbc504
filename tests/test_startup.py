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
