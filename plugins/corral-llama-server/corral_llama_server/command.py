"""``corral llama-server build``: xllamacpp built from source for this machine's CPU, installed in place."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click


@click.group("llama-server")
def llama_server_cmd() -> None:
    """Tools of the llama-server driver (xllamacpp)."""


@llama_server_cmd.command("build")
@click.option("--wheel-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the built wheel (and the build log) in this folder.")
@click.option("--no-install", is_flag=True, help="Build the wheel only (needs --wheel-dir).")
@click.option("-v", "--verbose", is_flag=True, help="Show the build's output as it runs.")
def build_cmd(wheel_dir: Path | None, no_install: bool, verbose: bool) -> None:
    """Build xllamacpp from source for this CPU and install it.

    The wheels on PyPI use AVX2 at most; a build on this machine uses every instruction its CPU has
    (AVX-512, VNNI, ...). It fetches the source of the installed version from the package index, needs CMake
    and a C++ compiler, and runs for minutes (about 6 on 2 cores). CMAKE_ARGS and xllamacpp's own
    build variables in the environment reach the build. Loaded models keep the old build until they are
    loaded again.
    """
    from importlib.metadata import PackageNotFoundError, version

    from corral.api import PluginMissing
    from corral_llama_server import build

    if no_install and wheel_dir is None:
        raise click.UsageError("--no-install keeps nothing without --wheel-dir; give the folder for the wheel")
    try:
        wanted = version("xllamacpp")
    except PackageNotFoundError:
        raise PluginMissing("xllamacpp is not installed; pip install corral-llama-server (or xllamacpp) first",
                            distribution="xllamacpp") from None
    build.needed_tools()
    into = wheel_dir or Path(tempfile.mkdtemp(prefix="corral-xllamacpp-"))
    log = into / f"xllamacpp-{wanted}-build.log"
    click.echo(f"Building xllamacpp {wanted} for this CPU from its source (minutes; the log: {log}) ...")
    try:
        wheel = build.build_wheel(wanted, into, log, echo=click.echo if verbose else None)
        click.echo(f"Built {wheel.name}")
        if no_install:
            click.echo(f"Kept {wheel}; install it with: pip install --force-reinstall --no-deps {wheel}")
            return
        build.install_wheel(wheel)
    except BaseException:
        if wheel_dir is None:
            click.echo(f"The build folder stays for a look: {into}", err=True)
        raise
    if wheel_dir is None:
        shutil.rmtree(into, ignore_errors=True)
    features = build.built_features(build.system_info())
    still = build.missing_features(features, build.cpu_flags())
    click.echo("Installed; llama.cpp now uses " + ", ".join(features) + "."
               + (f" This CPU also has {', '.join(still)}, which this build does not use." if still else ""))
