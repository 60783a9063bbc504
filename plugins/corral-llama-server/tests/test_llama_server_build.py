"""``corral llama-server build``: xllamacpp compiled from its source distribution for this CPU, and the
advice ``corral env`` gives when the installed build leaves out features the CPU has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral_llama_server.build import CPU_FLAGS, built_features, cmake_args, cpu_flags, missing_features

#: Loads the tiny GGUF through the driver in a fresh interpreter and completes greedily; prints where
#: xllamacpp came from, the CPU features it uses and the tokens completed.
COMPLETE = """
import json, sys
from pathlib import Path
import xllamacpp, corral_llama_server
from corral.testing import build_host, open_library, open_model, write_tiny_gguf
home = Path(sys.argv[1])
library = open_library(home, build_host(entry_points=False, plugins=[corral_llama_server]))
library.import_path(write_tiny_gguf(home / "tiny" / "tiny-chat.gguf"), name="tiny")
with open_model(library, "tiny", overrides={"threads": 1, "n_ctx": 256, "parallel": 1}) as handle:
    answer = handle.complete("hello", temperature=0, max_tokens=4)
print(json.dumps({"file": xllamacpp.__file__, "info": xllamacpp.get_system_info(),
                  "tokens": answer.completion_tokens, "text": answer.text}))
"""


def corral_cli():
    """The ``corral`` command group with the core's built-ins and this plugin."""
    import corral_llama_server

    from corral.testing import build_cli, build_host

    return build_cli(build_host(entry_points=False, plugins=[corral_llama_server]))


def build_folders() -> set[Path]:
    """The command's temporary build folders."""
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("corral-xllamacpp-*"))


def test_features_the_cpu_has_and_a_build_leaves_out():
    portable = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
    assert built_features(portable) == ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2", "LLAMAFILE")
    avx512 = {"pni", "ssse3", "avx", "avx2", "f16c", "fma", "bmi2", "avx512f", "avx512_vnni"}
    assert missing_features(built_features(portable), avx512) == ["AVX512", "AVX512_VNNI"]
    assert missing_features(built_features(portable), {"avx", "avx2", "fma"}) == []
    assert missing_features(built_features(portable), ()) == []  # no /proc/cpuinfo: nothing to advise


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512f avx512_vnni\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512f", "avx512_vnni"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_the_users_cmake_args_come_after_corrals():
    assert cmake_args({}) == "-DLLAMA_LLGUIDANCE=OFF -DLLAMA_BUILD_BORINGSSL=OFF -DLLAMA_OPENSSL=OFF"
    assert cmake_args({"CMAKE_ARGS": "-DLLAMA_OPENSSL=ON"}).endswith("-DLLAMA_OPENSSL=OFF -DLLAMA_OPENSSL=ON")


def test_env_advises_the_build_exactly_when_the_cpu_has_more(tmp_path, monkeypatch):
    import xllamacpp

    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    shown = subprocess.run([sys.executable, "-m", "corral", "env", "--json"], capture_output=True, text=True,
                           check=True)
    (ours,) = [b["status"] for p in json.loads(shown.stdout)["plugins"] for b in p["backends"]
               if b["status"]["name"] == "llama-server"]
    missing = missing_features(built_features(xllamacpp.get_system_info()), cpu_flags())
    if missing:
        assert ours["advice"] == (f"this xllamacpp does not use {', '.join(missing)}, which this CPU has; "
                                  "`corral llama-server build` builds it for this CPU (minutes)")
    else:
        assert ours["advice"] is None
    plain = subprocess.run([sys.executable, "-m", "corral", "env"], capture_output=True, text=True, check=True)
    assert ("      advice: this xllamacpp does not use" in plain.stdout) == bool(missing)


def test_build_without_cmake_is_refused_and_keeps_the_installed_xllamacpp(tmp_path, monkeypatch):
    import xllamacpp

    before = Path(xllamacpp.__file__).parent.stat().st_mtime_ns, version("xllamacpp")
    folders = build_folders()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for where in (["--wheel-dir", str(tmp_path / "w")], []):
        result = CliRunner().invoke(corral_cli(), ["llama-server", "build", *where])
        assert result.exit_code == 6, result.output
    assert build_folders() == folders
    assert "building xllamacpp needs CMake and a C++ compiler on PATH" in result.output
    assert "apt-get install cmake g++" in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "w").glob("*.whl"))
    assert (Path(xllamacpp.__file__).parent.stat().st_mtime_ns, version("xllamacpp")) == before


def test_wheel_only_needs_a_folder_to_keep_it():
    result = CliRunner().invoke(corral_cli(), ["llama-server", "build", "--no-install"])
    assert result.exit_code == 2 and "--no-install keeps nothing without --wheel-dir" in result.output


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cmake") and shutil.which("c++")), reason="needs CMake and a C++ compiler")
def test_the_build_uses_every_feature_of_this_cpu_and_serves(tmp_path):
    """The real build (minutes): the wheel of the installed version, which uses every CPU feature llama.cpp
    knows that this machine has, and loads and completes through the driver."""
    wheels, folders = tmp_path / "wheels", build_folders()
    result = CliRunner().invoke(corral_cli(), ["llama-server", "build", "--wheel-dir", str(wheels), "--no-install"])
    assert result.exit_code == 0, result.output
    assert build_folders() == folders  # everything went to --wheel-dir
    (wheel,) = wheels.glob(f"xllamacpp-{version('xllamacpp')}-*.whl")
    assert f"Kept {wheel}" in result.output
    assert (wheels / f"xllamacpp-{version('xllamacpp')}-build.log").stat().st_size > 0
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = subprocess.run([sys.executable, "-c", COMPLETE, str(tmp_path / "home")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    answer = json.loads(ran.stdout.strip().splitlines()[-1])
    assert answer["file"].startswith(str(site))
    assert missing_features(built_features(answer["info"]), cpu_flags()) == []
    assert set(built_features(answer["info"])) >= {n for n, f in CPU_FLAGS.items() if f in cpu_flags()}
    assert answer["tokens"] == 4
