"""Every third-party module that trio_cable imports is declared in
pyproject.toml: in ``[project] dependencies``, or in the optional extra that
brings it (``redis``). The scan reads the source with ``ast``, so imports
under ``if TYPE_CHECKING:`` and inside functions count too."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "trio_cable"

# Import names whose distribution is named differently (checked below against
# the installed metadata); others are their own distribution's name.
DISTRIBUTIONS = {"trio_websocket": "trio-websocket"}

# Extras that bundle tools for working on trio_cable, not runtime needs: a
# module found only there is not declared for users.
TOOL_EXTRAS = {"dev"}


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(source: str) -> set[str]:
    """The top-level names of the modules ``source`` imports, wherever the
    import stands, leaving out the stdlib and the package itself."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue  # not an import, or a relative one (our own)
        found.update(name.partition(".")[0] for name in names)
    return found - set(sys.stdlib_module_names) - {PACKAGE.name}


def imported_modules() -> dict[str, set[str]]:
    """Every third-party module imported in the package, with the files
    that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in third_party_imports(path.read_text()):
            found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def declared() -> dict[str, set[str]]:
    """Each declared distribution with where it is declared: ``""`` for
    ``[project] dependencies``, else the extra's name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    sections = {"": project.get("dependencies", [])}
    sections.update(project.get("optional-dependencies", {}))
    where: dict[str, set[str]] = {}
    for section, requirements in sections.items():
        for requirement in requirements:
            match = re.match(r"[A-Za-z0-9._-]+", requirement)
            assert match is not None, f"unreadable requirement {requirement!r}"
            where.setdefault(normalise(match.group()), set()).add(section)
    return where


def distribution(module: str) -> str:
    return normalise(DISTRIBUTIONS.get(module, module))


def test_the_scan_counts_every_kind_of_import() -> None:
    source = """
from __future__ import annotations
import json, os.path
import trio_cable.asgi
from typing import TYPE_CHECKING
from . import _hub
from ._errors import CableError
import trio.lowlevel as lowlevel
from wsproto.events import Request
if TYPE_CHECKING:
    from redis import Redis
def later():
    import outcome
"""
    assert third_party_imports(source) == {"trio", "wsproto", "redis", "outcome"}


def test_the_scan_sees_the_package_imports() -> None:
    """Not vacuous: it finds what the package is known to use."""
    found = imported_modules()
    assert {"trio", "trio_websocket", "wsproto", "outcome", "redis"} <= set(found)


def test_every_import_is_declared() -> None:
    where = declared()
    missing = {
        module: sorted(files)
        for module, files in imported_modules().items()
        if not (where.get(distribution(module), set()) - TOOL_EXTRAS)
    }
    assert not missing, (
        "imported by trio_cable but not declared in pyproject.toml "
        f"([project] dependencies or a user-facing extra): {missing}"
    )


def test_redis_is_the_redis_extra_and_the_rest_is_required() -> None:
    """Only the Redis bridge's client is optional; everything else the
    package imports is installed with it."""
    where = declared()
    for module in imported_modules():
        expected = {"redis"} if module == "redis" else {""}
        assert where.get(distribution(module), set()) - TOOL_EXTRAS == expected, module


def test_import_names_map_to_the_installed_distributions() -> None:
    """DISTRIBUTIONS agrees with the installed packages' own metadata."""
    installed = packages_distributions()
    for module in imported_modules():
        if module in installed:
            names = {normalise(name) for name in installed[module]}
            assert distribution(module) in names, (module, names)
