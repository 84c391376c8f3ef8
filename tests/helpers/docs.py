"""The docs' code blocks: Python blocks run as modules (the guide's
examples are real code, and the tests that live in a doc are collected
from it); the JavaScript blocks are handed out for Node or Chromium."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
DOCS = ROOT / "docs"


def doc_path(name: str) -> Path:
    """``README.md`` is the repository's; any other name is in ``docs/``."""
    return ROOT / name if name == "README.md" else DOCS / name


def code_blocks(name: str, language: str) -> list[str]:
    """The fenced ``language`` blocks of a doc, in order."""
    block = re.compile(rf"```{re.escape(language)}\n(.*?)```", re.DOTALL)
    return block.findall(doc_path(name).read_text())


def load_doc(name: str) -> types.ModuleType:
    """Run a doc's Python blocks in order, as one module."""
    module = types.ModuleType(f"docs_{name}")
    source = "\n".join(code_blocks(name, "python"))
    # In sys.modules while it runs, as an imported module is: dataclasses
    # look their module up there.
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(doc_path(name)), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def doc_tests(name: str) -> list[str]:
    """The names of the ``test_*`` functions a doc defines."""
    return sorted(n for n in vars(load_doc(name)) if n.startswith("test_"))
