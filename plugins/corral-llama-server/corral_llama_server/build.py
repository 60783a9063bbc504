"""Build xllamacpp from its source distribution for the CPU of this machine.

xllamacpp's wheels on PyPI are portable builds: on x86 they use AVX2 and nothing newer. llama.cpp built
from source (``GGML_NATIVE``, the default of xllamacpp's own build script) uses every instruction the CPU
has, AVX-512 and VNNI among them, which is what pip gives llama-cpp-python, a source-only package.
:func:`build_wheel` runs that build with pip; :func:`missing_features` says whether it would help here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

from corral.api import CorralError, PluginMissing

#: CMake switches for what Corral never uses and a machine without network could not fetch: llguidance
#: (Rust and its crates) and TLS for llama-server's own HTTP client (BoringSSL's source). They come before
#: the user's own ``CMAKE_ARGS``, so those win.
CMAKE_ARGS = ("-DLLAMA_LLGUIDANCE=OFF", "-DLLAMA_BUILD_BORINGSSL=OFF", "-DLLAMA_OPENSSL=OFF")

#: llama.cpp's names of the x86 features it reports -> the flag Linux lists in /proc/cpuinfo.
CPU_FLAGS = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma",
    "BMI2": "bmi2", "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8",
}

#: How many lines of the build's output a failure shows.
TAIL = 25


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags of this machine's first CPU, as Linux lists them (empty where there is no /proc)."""
    try:
        with cpuinfo.open(encoding="ascii", errors="replace") as lines:
            for line in lines:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def built_features(system_info: str) -> tuple[str, ...]:
    """The CPU features in llama.cpp's ``get_system_info()`` line (``CPU : SSE3 = 1 | AVX2 = 1 | ...``), in
    its order."""
    return tuple(part.split("=")[0].split(":")[-1].strip() for part in system_info.split("|")
                 if part.strip().endswith("= 1"))


def missing_features(built: Iterable[str], flags: Iterable[str]) -> list[str]:
    """The features this CPU has (its ``flags``) that a llama.cpp build with ``built`` does not use."""
    built, flags = set(built), set(flags)
    return [name for name, flag in CPU_FLAGS.items() if flag in flags and name not in built]


def cmake_args(environ: dict[str, str]) -> str:
    """``CMAKE_ARGS`` for the build: Corral's switches, then whatever the user set."""
    return " ".join((*CMAKE_ARGS, environ.get("CMAKE_ARGS", ""))).strip()


def needed_tools() -> None:
    """Raise :class:`PluginMissing` unless CMake and a C++ compiler are on PATH."""
    absent = [name for name, choices in (("CMake", ("cmake",)), ("a C++ compiler", ("c++", "g++", "clang++")))
              if not any(shutil.which(tool) for tool in choices)]
    if absent:
        raise PluginMissing(
            f"building xllamacpp needs {' and '.join(absent)} on PATH; install them "
            "(Debian and Ubuntu: apt-get install cmake g++) and run the build again",
            distribution="xllamacpp",
        )


def build_wheel(version: str, wheel_dir: Path, log: Path, *,
                echo: Callable[[str], None] | None = None) -> Path:
    """Build the wheel of xllamacpp ``version`` from its source distribution into ``wheel_dir``.

    pip fetches the source and the build requirements from the package index the machine is configured
    with. The build's output goes to ``log`` and, line by line, to ``echo`` when given. Returns the wheel;
    raises :class:`CorralError` with the end of the log when the build fails.
    """
    needed_tools()
    wheel_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CMAKE_ARGS": cmake_args(dict(os.environ))}
    env.pop("XLLAMACPP_RELEASE", None)  # the portable switch: exactly what this build is not
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "--no-binary", "xllamacpp",
               "--wheel-dir", str(wheel_dir), f"xllamacpp=={version}"]
    tail: list[str] = []
    with log.open("w", encoding="utf-8") as out:
        out.write(f"$ CMAKE_ARGS={env['CMAKE_ARGS']!r} {' '.join(command)}\n")
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace")
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            tail = [*tail[1 - TAIL:], line.rstrip()]
            if echo is not None:
                echo(line.rstrip())
        code = process.wait()
    wheels = sorted(wheel_dir.glob(f"xllamacpp-{version}-*.whl"), key=lambda p: p.stat().st_mtime)
    if code != 0 or not wheels:
        shown = "\n".join(tail)
        raise CorralError(f"building xllamacpp {version} failed (pip exited with {code}); the end of its "
                          f"output:\n{shown}\nThe whole log: {log}")
    return wheels[-1]


def install_wheel(wheel: Path) -> None:
    """Install ``wheel`` over the xllamacpp in this environment (its dependencies are left as they are)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise CorralError(f"installing {wheel} failed: {done.stderr.strip().splitlines()[-1:]}; "
                          f"install it by hand: {sys.executable} -m pip install --force-reinstall --no-deps {wheel}")


def system_info(path: Path | None = None) -> str:
    """llama.cpp's ``get_system_info()`` of the xllamacpp a fresh interpreter imports (from ``path`` first)."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(path), env.get("PYTHONPATH"))))
    done = subprocess.run([sys.executable, "-c", "import xllamacpp; print(xllamacpp.get_system_info())"],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise CorralError(f"the built xllamacpp does not import: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip()
