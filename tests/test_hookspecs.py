"""Meta-tests: every hookspec is typed, documented with its exact signature, and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from corral import hookspecs

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "corral_spec")
}


def signature_text(fn) -> str:
    return f"{fn.__name__}{inspect.signature(fn)}".replace("'", "")


def test_there_are_hooks_for_every_stage():
    assert {"detect_model", "check_lora", "register_drivers", "register_sources", "register_exporters",
            "register_gpu_vendors", "select_driver"} <= set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_docstring_and_types(name):
    fn = SPECS[name]
    assert fn.__doc__ and fn.__doc__.strip().splitlines()[0].endswith(".")
    sig = inspect.signature(fn)
    assert sig.return_annotation is not inspect.Signature.empty
    assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values())
    if fn.corral_spec["firstresult"]:
        assert "first non-None result" in fn.__doc__


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_has_a_doc_section_with_its_signature(name):
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert f"### `{signature_text(SPECS[name])}`" in docs


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_exercised_by_a_test(name):
    own = Path(__file__).name
    texts = [p.read_text() for p in (ROOT / "tests").glob("test_*.py") if p.name != own]
    texts += [p.read_text() for p in (ROOT / "tests").glob("plugins_for_tests.py")]
    assert any(name in t for t in texts), f"no test mentions hook {name}"
