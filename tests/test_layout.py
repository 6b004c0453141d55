"""The package's layering, checked on its source: no import cycles between modules (lazy imports
inside functions count too), no Streamlit in the core, no private name imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "flower_core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, list[tuple[str, list[str]]]]:
    """Each core module's imports: (imported module, names taken from it)."""
    modules = {_module_name(path): path for path in CORE.rglob("*.py")}
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for name, path in modules.items():
        found[name] = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [alias.name for alias in node.names]
                # `from package import module` imports the module.
                submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
                found[name] += [(m, []) for m in submodules]
                found[name].append((node.module, [n for n in names if f"{node.module}.{n}" not in modules]))
            elif isinstance(node, ast.Import):
                found[name] += [(alias.name, []) for alias in node.names]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_core_has_no_import_cycles():
    imports = _imports()
    graph = {
        module: {target for target, _ in targets if target in imports and target != module}
        for module, targets in imports.items()
    }
    # A package's __init__ may gather its own modules; a module importing its package's
    # __init__ is then not a cycle of the design, so only module-to-module edges count.
    packages = {m for m in imports if (CORE.parent / m.replace(".", "/") / "__init__.py").exists()}
    graph = {m: {t for t in ts if t not in packages} for m, ts in graph.items() if m not in packages}
    assert _cycles(graph) == []


def test_the_core_never_imports_streamlit():
    offenders = [
        m for m, targets in _imports().items() if any(t.split(".")[0] == "streamlit" for t, _ in targets)
    ]
    assert offenders == []


def test_no_private_name_is_imported_across_modules():
    offenders = [
        f"{module}: {target}.{name}"
        for module, targets in _imports().items()
        for target, names in targets
        for name in names
        if target.startswith("flower_core") and name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == []
