"""Plugins reach the core through one module: code under plugins/ and plugin_template/ imports only
``corral.api`` (and ``hookimpl`` from ``corral``), their tests also ``corral.testing``; the core itself
never imports the facade. Read with ``ast``: imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {"corral", "corral.api"}
ALLOWED_IN_TESTS = ALLOWED | {"corral.testing"}


def corral_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "corral"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "corral":
                found.append((node.lineno, node.module))
    return found


def plugin_files() -> list[Path]:
    files = [*ROOT.glob("plugins/*/**/*.py"), *ROOT.glob("plugin_template/**/*.py")]
    return [f for f in files if "build" not in f.parts]


def test_plugins_import_only_the_public_api():
    wrong = []
    for path in plugin_files():
        in_tests = "tests" in path.relative_to(ROOT).parts
        allowed = ALLOWED_IN_TESTS if in_tests else ALLOWED
        for line, module in corral_imports(path):
            if module not in allowed and not (in_tests and module.startswith("corral.testing.")):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "plugins import only corral.api (tests also corral.testing):\n" + "\n".join(wrong)


def test_the_core_never_imports_the_facade():
    core = ROOT / "core" / "corral"
    wrong = [f"{p.relative_to(ROOT)}:{line}" for p in core.rglob("*.py") if p.name != "api.py"
             for line, module in corral_imports(p) if module == "corral.api"]  # fmt: skip
    assert not wrong, "core modules import the layer they need, not corral.api: " + ", ".join(wrong)


def test_the_public_api_has_what_the_plugin_guide_names():
    import corral.api as api

    for name in ("hookimpl", "Driver", "LoadedModel", "Source", "Exporter", "GpuVendor", "TorchDriver",
                 "Model", "Category", "Format", "CorralError", "SettingSpec", "read_settings", "read_sampling"):
        assert name in api.__all__, name
