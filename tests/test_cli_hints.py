"""Hints that name what exists: an example in every command's --help (each naming real options), shell
completion, `corral env` without "None", the offline search hint, "an embedding model"."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import click
import pytest

from corral.cli.examples import EXAMPLES
from corral.testing.cli import as_json, assert_clean_error, ok


def commands(group: click.Group, ctx: click.Context, prefix: str = ""):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            yield from commands(command, ctx, path)
        else:
            yield path, command


@pytest.fixture
def cli(host):
    from corral.cli import build_cli

    return build_cli()


def test_every_command_has_an_example_in_its_help(run, cli):
    ctx = click.Context(cli)
    lacking = [path for path, _ in commands(cli, ctx) if "Examples:" not in run(*path.split(), "--help").stdout]
    assert lacking == [], "give these commands an example (core/corral/cli/examples.py or their docstring)"


def test_examples_use_commands_and_options_that_exist(cli):
    """Each example line parses: its command exists and every option it passes is one the command has."""
    ctx = click.Context(cli)
    known = dict(commands(cli, ctx))
    for path, lines in EXAMPLES.items():
        if path not in known:
            continue  # a plugin's command (or one not built yet): checked where it is installed
        command = known[path]
        options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}
        for line in lines:
            words = shlex.split(line.split("|")[-1])
            assert words[: 1 + len(path.split())] == ["corral", *path.split()], line
            used = {w.split("=")[0] for w in words if w.startswith("--")}
            assert used <= options, f"{line}: {sorted(used - options)} are not options of corral {path}"


def test_top_level_help_documents_shell_completion(run):
    shown = ok(run("--help")).stdout
    assert "_CORRAL_COMPLETE=bash_source corral" in shown and "zsh_source" in shown


def test_env_never_prints_none(home):
    from click.testing import CliRunner

    import plugins_for_tests as tp
    from corral.cli import build_cli
    from corral.testing import installed_host

    with installed_host(tp.missing_plugin):  # a category whose backend is missing; others with no plugin
        shown = ok(CliRunner().invoke(build_cli(), ["env"])).stdout
    assert "None" not in shown and "not usable" in shown


def test_an_before_a_vowel(run, minilm_path):
    as_json(run("import", minilm_path, "--name", "minilm", "--json"))
    assert_clean_error(run("chat", "minilm", "hi"), "minilm is an embedding model")


def test_offline_search_names_what_exists(home):
    """With HF_HUB_OFFLINE set, a search (which only the hub answers) says to unset it and which commands
    work from the cache, never an option search does not have."""
    pytest.importorskip("corral_huggingface")
    env = {**os.environ, "CORRAL_HOME": str(home), "HF_HUB_OFFLINE": "1", "CORRAL_LOAD_PLUGINS": "huggingface"}
    out = subprocess.run([sys.executable, "-m", "corral", "search", "gemma"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode != 0
    assert "use --offline" not in out.stderr
    assert "unset HF_HUB_OFFLINE" in out.stderr and "corral files REPO" in out.stderr
    help_text = subprocess.run([sys.executable, "-m", "corral", "search", "--help"], capture_output=True,
                               text=True, env=env, timeout=120).stdout
    assert "--offline" not in help_text  # search really has no such option
