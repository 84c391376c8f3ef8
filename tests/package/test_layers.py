"""The layers of trio_cable, checked from the source with ``ast``.

No import cycle among the package's modules (imports under
``TYPE_CHECKING`` count too), and the lower layers import no higher one:
``protocol/`` nothing but itself and the errors, ``transports/`` neither
the cable nor the connection.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trio_cable

ROOT = Path(trio_cable.__file__).parent


def _modules() -> dict[str, Path]:
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    return found


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


def test_no_import_cycles() -> None:
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for dep in sorted(GRAPH[name]):
            visit(dep, [*trail, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])


def test_lower_layers_import_no_higher_one() -> None:
    for name, deps in GRAPH.items():
        if name.startswith("trio_cable.protocol"):
            allowed = {"trio_cable._errors"}
            outside = {d for d in deps if not d.startswith("trio_cable.protocol")}
            assert outside <= allowed, (name, outside)
        if name.startswith("trio_cable.transports"):
            assert not deps & {
                "trio_cable._cable",
                "trio_cable._connection",
                "trio_cable._serving",
            }, name


#: "About 500 lines": past this a module holds more than one concern.
MAX_LINES = 550


def test_no_module_is_too_big() -> None:
    sizes = {
        name: len(path.read_text().splitlines()) for name, path in _modules().items()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check above is not vacuous: the graph it walks has edges."""
    assert GRAPH["trio_cable._connection"]
    assert "trio_cable.protocol.codec" in GRAPH["trio_cable.protocol"]
