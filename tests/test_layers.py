"""The layers point one way (DESIGN.md) and no module imports itself back through others.

Walks the source of every module under `neat/` (imports under `if TYPE_CHECKING:` are for
the type checker only and do not count).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neat"

# Lower numbers sit lower; a module may import its own layer and the ones below.
LAYERS: dict[str, int] = {
    "errors": 0,
    "files": 0,
    "interfaces": 1,
    "config": 1,
    "data": 2,
    "models": 2,
    "indexing": 2,
    "optimization": 2,
    "evaluation": 2,
    "monitoring": 2,
    "persistence": 2,
    "training": 3,
    "di": 4,
    "inference": 4,
    "experts": 4,
    "doc2query": 4,
    "visual_thoughts": 4,
    "dispatch": 4,
    "export": 4,
    "cli": 5,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, top_level_only: bool) -> Iterator[str]:
    """Absolute names of the neat modules (or packages) `tree` imports."""
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST, depth: int) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit(other, depth)
                continue
            if isinstance(child, ast.Import):
                yield from (a.name for a in child.names if a.name.split(".")[0] == "neat")
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] == "neat":
                    for alias in child.names:
                        candidate = f"{base}.{alias.name}"
                        yield candidate if _exists(candidate) else base
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if nested and top_level_only:
                continue
            yield from visit(child, depth + 1)

    yield from visit(tree, 0)


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _sources() -> list[tuple[str, bool, ast.AST]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.append((_module_name(path), path.name == "__init__.py", tree))
    return found


def test_every_package_has_a_layer() -> None:
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    tops -= {"__init__", "__main__", "__pycache__"}
    assert tops <= set(LAYERS), f"give these a layer in LAYERS: {sorted(tops - set(LAYERS))}"


def test_no_import_runs_up_the_layers() -> None:
    upward = []
    for module, is_package, tree in _sources():
        own = _layer(module)
        if own is None:  # neat/__init__.py and __main__.py sit above everything
            continue
        for target in _imports(tree, module, is_package, top_level_only=False):
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_models_data_and_indexing_never_import_di_training_or_cli() -> None:
    offending = [
        f"{module} -> {target}"
        for module, is_package, tree in _sources()
        if module.split(".")[1:2] and module.split(".")[1] in {"models", "data", "indexing"}
        for target in _imports(tree, module, is_package, top_level_only=False)
        if target.split(".")[1:2] and target.split(".")[1] in {"di", "training", "cli"}
    ]
    assert not offending, "\n".join(offending)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for module, is_package, tree in _sources():
        targets = set(_imports(tree, module, is_package, top_level_only=False))
        graph[module] = {t for t in targets if t != module}
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    result: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    result.append(component)
                continue
            if child not in graph:
                continue
            if child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return result


@pytest.mark.parametrize("module", ["neat.config", "neat.data", "neat.indexing", "neat.models"])
def test_the_walk_sees_real_imports(module: str) -> None:
    """A negative control: the walker finds imports where there are some."""
    sources = {name: (pkg, tree) for name, pkg, tree in _sources()}
    found = {
        target
        for name, (pkg, tree) in sources.items()
        if name.startswith(module)
        for target in _imports(tree, name, pkg, top_level_only=False)
    }
    assert any(t.startswith("neat.") for t in found)
