"""The docs' Python blocks, run as modules: the guide's examples are real
code, and the tests that live in a doc are collected from it."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

DOCS = Path(__file__).parent.parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def load_doc(name: str) -> types.ModuleType:
    """Run a doc's Python blocks in order, as one module."""
    module = types.ModuleType(f"docs_{name}")
    source = "\n".join(BLOCK.findall((DOCS / name).read_text()))
    # In sys.modules while it runs, as an imported module is: dataclasses
    # look their module up there.
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(DOCS / name), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def doc_tests(name: str) -> list[str]:
    """The names of the ``test_*`` functions a doc defines."""
    return sorted(n for n in vars(load_doc(name)) if n.startswith("test_"))
