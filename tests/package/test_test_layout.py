"""The test suite's own layout: helpers live in ``tests/helpers/``, and no
test module imports another (checked with ``ast``, not by eye)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
while TESTS.name != "tests":
    TESTS = TESTS.parent


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` imports, by absolute name (a relative import
    is resolved against ``package``, the file's folder)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # ``from tests import test_x`` imports a test module too.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_test_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "tests" and any(part.startswith("test_") for part in parts)


def test_no_test_module_imports_another() -> None:
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(path.parent.relative_to(TESTS.parent).parts)
        names = imported_modules(path.read_text(), package)
        if found := sorted(name for name in names if is_test_module(name)):
            offenders[str(path.relative_to(TESTS.parent))] = found
    assert offenders == {}


def test_the_check_sees_every_form_of_import() -> None:
    forms = {
        "import tests.test_fuzz": "tests.test_fuzz",
        "from tests.fuzz.test_fuzz import served": "tests.fuzz.test_fuzz",
        "from tests.fuzz import test_fuzz": "tests.fuzz.test_fuzz",
        "from .test_fuzz import served": "tests.fuzz.test_fuzz",
        "from . import test_fuzz": "tests.fuzz.test_fuzz",
        "from ..server.test_auth import x": "tests.server.test_auth",
    }
    for source, name in forms.items():
        found = imported_modules(source, "tests.fuzz")
        assert name in found, source
        assert any(is_test_module(n) for n in found), source
    helpers = imported_modules("from tests.helpers import served", "tests.fuzz")
    assert not any(is_test_module(n) for n in helpers)
    assert not is_test_module("trio_cable.testing")
