"""One error hierarchy: every class in corral.errors, each exit code owned by one class across the core
and every installed plugin (a subclass that sets no code shares its parent's), and docs/cli.md lists them."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import corral
import corral.errors as errors

ROOT = Path(__file__).resolve().parent.parent


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def import_everything() -> None:
    for info in pkgutil.walk_packages(corral.__path__, "corral."):
        if info.name.startswith(("corral.testing", "corral.__main__")):
            continue
        importlib.import_module(info.name)
    for pkg in ROOT.glob("plugins/*/corral_*"):
        try:
            importlib.import_module(pkg.name)
        except ImportError:
            continue  # a plugin not installed here
        for info in pkgutil.walk_packages([str(pkg)], pkg.name + "."):
            try:
                importlib.import_module(info.name)
            except ImportError:
                continue


def test_exit_codes_are_unique_across_core_and_plugins():
    import_everything()
    owners: dict[int, list[str]] = {}
    for cls in all_subclasses(errors.CorralError) | {errors.CorralError}:
        if "exit_code" in vars(cls):
            owners.setdefault(cls.exit_code, []).append(f"{cls.__module__}.{cls.__qualname__}")
    shared = {code: names for code, names in owners.items() if len(names) > 1}
    assert not shared, f"exit codes owned by more than one class: {shared}"
    outside = sorted(n for names in owners.values() for n in names if not n.startswith("corral.errors."))
    assert not outside, f"exit codes are set in corral.errors only: {outside}"


def test_the_cli_reference_lists_every_exit_code():
    text = (ROOT / "docs" / "cli.md").read_text()
    for cls in [errors.CorralError, *all_subclasses(errors.CorralError)]:
        if "exit_code" in vars(cls) and cls.__module__ == "corral.errors":
            assert f"| {cls.exit_code} | `{cls.__name__}`" in text, cls.__name__
