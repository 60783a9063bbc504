"""The core's layers (docs/architecture.md): no module imports a layer above its own, and no import
loop joins core modules. Imports are read with ``ast``, those inside functions and under
``TYPE_CHECKING`` included, so a loop cannot hide in a function body."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"

#: Module (or package) -> layer, bottom first. The longest matching prefix decides.
LAYERS = {
    "corral.errors": 0, "corral.records": 0, "corral.convert": 0, "corral.home": 0, "corral.known": 0,
    "corral.suggest": 0, "corral.words": 0,
    "corral.ext": 1, "corral.driver": 1, "corral.detect": 1, "corral.store": 1, "corral.settings": 1,
    "corral.sampling": 1, "corral.tools": 1, "corral.templates": 1, "corral.keys": 1,
    # Downloads; ``corral.pull`` itself (fetch, then adopt into the library) sits with adoption.
    "corral.pull.fetch": 2, "corral.pull.names": 2, "corral.pull.refs": 2, "corral.pull.variants": 2,
    "corral.pull.errors": 2, "corral.hookspecs": 2, "corral.manifests": 2,
    # The plugin host, and what reads GPUs and memory through it.
    "corral.plugins": 3, "corral.builtin": 3, "corral.estimate": 3, "corral.monitor": 3,
    "corral.intake": 4, "corral.library": 4,
    # Adoption, pulls into the library and load planning (driver choice, the checks before a load).
    "corral.adopt": 5, "corral.pull": 5, "corral.catalog": 5, "corral.clean": 5, "corral.loading": 5,
    "corral.runtime": 6,
    "corral.server": 7,
    "corral.cli": 8, "corral.__main__": 8,
    "corral.api": 9, "corral.testing": 9,
}

def core_modules() -> dict[str, Path]:
    found = {}
    for path in (CORE / "corral").rglob("*.py"):
        parts = list(path.relative_to(CORE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
            else:
                continue
            for target in targets:
                found = resolve(target) if target.startswith("corral") else None
                if found and found != module:
                    graph[module].add(found)
    return graph


def layer(module: str) -> int | None:
    name = module
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    return None


def loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_core_module_has_a_layer():
    assert [m for m in core_modules() if m != "corral" and layer(m) is None] == []


def test_no_core_module_imports_a_higher_layer():
    upward = set()
    for module, targets in import_graph().items():
        for target in targets:
            if module == "corral" or target == "corral":
                continue  # the package's __init__ holds only hookimpl and the version
            if layer(module) < layer(target):
                upward.add((module, target))
    assert upward == set(), "imports reaching a higher layer"


def test_no_import_loop_among_core_modules():
    assert loops(import_graph()) == []


def test_the_loop_finder_finds_a_loop():
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
