"""The docs stay true: the CLI reference is generated from the click commands and must match them, every
relative link resolves, and the plugin guide covers the conformance suite test by test."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import plugins_for_tests as tp

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_matches_the_commands():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr  # ends with: run: python scripts/gen_cli_docs.py


def test_cli_reference_has_every_core_command_and_no_plugin_command(host):
    gen = load_script("gen_cli_docs")
    text = (DOCS / "cli.md").read_text()
    cli = gen.core_cli()
    paths = [ctx.command_path for ctx, _ in gen.walk(cli, gen.context(cli, "corral", None))]
    assert len(paths) > 30 and "corral plugin new" in paths
    for path in paths:
        assert f"\n## {path}\n" in text, f"docs/cli.md has no section for {path}"
    # A plugin's command shows in the CLI it builds, never in the page.
    from corral.cli import build_cli
    from corral.plugins import set_host

    host.pm.register(tp.extras_plugin, name="extras")
    set_host(host)  # core_cli() put back the default
    with_plugin = gen.render(build_cli())
    assert "## corral hello" in with_plugin and "corral hello" not in text


def test_cli_reference_check_fails_on_drift(tmp_path, monkeypatch):
    gen = load_script("gen_cli_docs")
    stale = tmp_path / "cli.md"
    stale.write_text((DOCS / "cli.md").read_text().replace("Create plugin package", "Make plugin package"))
    monkeypatch.setattr(gen, "TARGET", stale)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    assert stale.read_text() == (DOCS / "cli.md").read_text()


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_in_docs_resolve():
    broken = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue  # a URL
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and path.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
                if anchor not in {slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_plugin_guide_covers_the_template_and_every_conformance_test():
    from corral.testing import Conformance

    guide = (DOCS / "plugins.md").read_text()
    assert "## Start from the template" in guide and "## Conformance suite" in guide
    section = guide.split("## Conformance suite", 1)[1].split("\n## ", 1)[0]
    tests = [name for name, _ in inspect.getmembers(Conformance, inspect.isfunction) if name.startswith("test_")]
    assert len(tests) >= 8
    for name in tests:
        assert f"`{name}`" in section, f"docs/plugins.md does not describe conformance test {name}"
