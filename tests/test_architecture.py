"""The package structure of ``src/jppl``: no import cycle between packages, no private name
imported or used across packages, and the layers of ARCHITECTURE.md.

A *package* is a direct child of ``jppl`` (``jppl.mcmc``, ``jppl.primitives``, ...). Every
``import`` counts, also one inside a function: a lazy import that dodges a cycle is still a
cycle. The checks read the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "jppl"

# Bottom to top (ARCHITECTURE.md). A package may import only packages of lower layers, and
# none of its own layer.
LAYERS: list[set[str]] = [
    {"stack", "version", "checkpoint", "ops"},
    {"distributions", "diagnostics", "inference_data", "runloop", "optim"},
    {"primitives", "util"},
    {"handlers"},
    {"enumerate"},
    {"reparam", "parallel"},
    {"model"},
    {"mcmc", "vi"},
    {"infer"},
    {"nn"},
    {"contrib"},
    {"__init__"},
]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _package_of(module: str) -> str:
    """``jppl.mcmc.nuts`` -> ``mcmc``; the root ``jppl`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _sources() -> Iterator[tuple[str, pathlib.Path, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        yield _module_name(path), path, ast.parse(path.read_text(), filename=str(path))


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: pathlib.Path, tree: ast.Module):
    """Yield ``(line, imported module, imported name or None)`` for every jppl import."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jppl":
                    yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            if target.split(".")[0] != "jppl":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if (SRC.parent / submodule.replace(".", "/")).with_suffix(".py").exists() or (
                    SRC.parent / submodule.replace(".", "/") / "__init__.py"
                ).exists():
                    yield node.lineno, submodule, None
                else:
                    yield node.lineno, target, alias.name


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """``{package: {imported package: ["file:line", ...]}}`` for imports across packages."""
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path, tree in _sources():
        src = _package_of(module)
        for line, target, _ in _imports(module, path, tree):
            dst = _package_of(target)
            if dst != src:
                where = f"{path.relative_to(SRC.parent)}:{line}"
                graph.setdefault(src, {}).setdefault(dst, []).append(where)
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_packages():
    graph = _package_graph()
    cycles = _cycles(graph)
    detail = [
        f"{a} -> {b}: {', '.join(graph[a][b])}"
        for cycle in cycles
        for a in cycle
        for b in cycle
        if b in graph.get(a, {})
    ]
    assert not cycles, f"import cycles between packages {cycles}:\n" + "\n".join(detail)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_across_packages():
    found = []
    for module, path, tree in _sources():
        src = _package_of(module)
        # Names bound to jppl modules of other packages: `import jppl.x.y as m`, `from jppl.x
        # import y` (a module); attribute access `m._private` on them is a private use too.
        bound: dict[str, str] = {}
        for line, target, name in _imports(module, path, tree):
            other = _package_of(target) != src
            if name is not None and _private(name) and other:
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {target}.{name}")
            if name is None and other:
                bound[target.rsplit(".", 1)[-1]] = target
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and _private(node.attr)
            ):
                found.append(
                    f"{path.relative_to(SRC.parent)}:{node.lineno}: "
                    f"{bound[node.value.id]}.{node.attr}"
                )
        for line, target, _ in _imports(module, path, tree):
            if _package_of(target) != src and any(_private(p) for p in target.split(".")):
                found.append(f"{path.relative_to(SRC.parent)}:{line}: imports {target}")
    assert not found, "private names used across packages:\n" + "\n".join(sorted(set(found)))


def test_packages_import_only_lower_layers():
    layer_of = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    graph = _package_graph()
    unknown = sorted(set(graph) - set(layer_of))
    assert not unknown, f"packages missing from LAYERS (and ARCHITECTURE.md): {unknown}"
    wrong = [
        f"{a} (layer {layer_of[a]}) imports {b} (layer {layer_of.get(b)}): {', '.join(where)}"
        for a, targets in graph.items()
        for b, where in targets.items()
        if layer_of.get(b, len(LAYERS)) >= layer_of[a]
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_every_package_is_in_a_layer():
    packages = {p.stem for p in SRC.glob("*.py")} | {
        p.parent.name for p in SRC.glob("*/__init__.py")
    }
    listed = set().union(*LAYERS)
    assert packages <= listed, f"not in LAYERS: {sorted(packages - listed)}"


@pytest.mark.parametrize(
    "source, cycles",
    [
        ({"a": {"b": []}, "b": {"a": []}}, [["a", "b"]]),
        ({"a": {"b": []}, "b": {"c": []}, "c": {}}, []),
        ({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(source, cycles):
    assert _cycles(source) == cycles


def test_checks_see_lazy_and_relative_imports(tmp_path):
    """The checks would catch a cycle hidden in a function, and a relative import."""
    code = "def f():\n    from jppl.mcmc import runner\n    from .util import _x\n"
    tree = ast.parse(code)
    path = SRC / "vi" / "elbo.py"
    found = list(_imports("jppl.vi.elbo", path, tree))
    assert (2, "jppl.mcmc.runner", None) in found
    assert (3, "jppl.vi.util", "_x") in found


def test_no_import_cycle_between_modules():
    """Inside a package too: a module pair that imports each other (even lazily) is one
    concern split in two, or a missing public seam."""
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path, tree in _sources():
        for line, target, _ in _imports(module, path, tree):
            if target != module and not module.startswith(target + "."):
                where = f"{path.relative_to(SRC.parent)}:{line}"
                graph.setdefault(module, {}).setdefault(target, []).append(where)
    # `from jppl.x import name` counts as importing jppl.x (its __init__), so a module that
    # imports its own package's __init__ forms a cycle with the re-exports there.
    cycles = _cycles(graph)
    detail = [
        f"{a} -> {b}: {', '.join(graph[a][b])}"
        for cycle in cycles
        for a in cycle
        for b in cycle
        if b in graph.get(a, {})
    ]
    assert not cycles, f"import cycles between modules {cycles}:\n" + "\n".join(detail)
