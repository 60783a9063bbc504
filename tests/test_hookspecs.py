"""Meta-tests: every hookspec is typed, documented with its exact signature, and exercised by a test.

The checks are functions of a plugin manager's specs, so one test can show that they fail for a hook
added without docs or tests.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path
from typing import Callable

import pluggy
import pytest

from corral.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"


def hookspecs_of(pm: pluggy.PluginManager) -> dict[str, Callable]:
    """Hook name -> the spec function, for every hookspec ``pm`` knows."""
    callers = (getattr(pm.hook, name) for name in dir(pm.hook) if not name.startswith("_"))
    return {c.name: c.spec.function for c in callers if isinstance(c, pluggy.HookCaller) and c.spec is not None}


SPECS = hookspecs_of(make_plugin_manager())


def signature_text(fn: Callable) -> str:
    return f"{fn.__name__}{inspect.signature(fn)}".replace("'", "")


def core_test_texts(own: str = Path(__file__).name) -> list[str]:
    """The text of every core test module (except this one) and of the core's test plugins."""
    tests = ROOT / "tests"
    paths = [p for p in tests.glob("test_*.py") if p.name != own] + list(tests.glob("plugins_for_tests.py"))
    paths += list(tests.glob("*_plugin.py"))
    return [p.read_text() for p in paths]


def check_typed_and_documented(fn: Callable, firstresult: bool) -> None:
    assert fn.__doc__ and fn.__doc__.strip().splitlines()[0].endswith("."), f"{fn.__name__}: no one-line summary"
    sig = inspect.signature(fn)
    assert sig.return_annotation is not inspect.Signature.empty, f"{fn.__name__}: no return type"
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), fn.__name__
    if firstresult:
        assert "first non-None result" in fn.__doc__, f"{fn.__name__}: does not say it stops at a result"


def check_doc_section(fn: Callable, docs: str) -> None:
    heading = f"### `{signature_text(fn)}`"
    assert heading in docs, f"docs/plugins.md has no section {heading}"


def check_exercised(name: str, texts: list[str]) -> None:
    assert any(name in t for t in texts), f"no test mentions hook {name}"


def test_there_are_hooks_for_every_stage():
    assert {"detect_model", "check_lora", "register_drivers", "register_sources", "register_exporters",
            "register_gpu_vendors", "select_driver"} <= set(SPECS)  # fmt: skip


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_docstring_and_types(name):
    fn = SPECS[name]
    check_typed_and_documented(fn, fn.corral_spec["firstresult"])


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_a_doc_section_with_its_signature(name):
    check_doc_section(SPECS[name], DOCS.read_text())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_exercised_by_a_test(name):
    check_exercised(name, core_test_texts())


def test_checks_fail_for_a_hook_without_docs_or_tests():
    """A spec added (here to a fresh plugin manager) with a docstring and types, but no doc section and
    no test, fails the two checks the parametrized tests above run for every real hook."""
    spec_module = types.ModuleType("probe_specs")

    def probe_only_spec_hook(path: Path) -> None:
        """Exists only in this test."""

    spec_module.probe_only_spec_hook = pluggy.HookspecMarker("corral")(probe_only_spec_hook)
    pm = make_plugin_manager()
    pm.add_hookspecs(spec_module)
    specs = hookspecs_of(pm)
    assert set(specs) == set(SPECS) | {"probe_only_spec_hook"}

    probe, docs, texts = specs["probe_only_spec_hook"], DOCS.read_text(), core_test_texts()
    check_typed_and_documented(probe, firstresult=False)
    with pytest.raises(AssertionError, match=r"has no section ### `probe_only_spec_hook\(path: Path\) -> None`"):
        check_doc_section(probe, docs)
    with pytest.raises(AssertionError, match="no test mentions hook probe_only_spec_hook"):
        check_exercised("probe_only_spec_hook", texts)
