"""Small helpers shared across the package: exception groups, and the
public face of the re-exported names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

__all__ = ["fixup_module_metadata", "leaves", "raise_cancellation", "single_error"]


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; ``[exc]`` otherwise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


def raise_cancellation(
    exc: BaseException, moot: Callable[[BaseException], bool]
) -> None:
    """When ``exc`` groups a cancellation with failures that ``moot``
    says the cancellation makes moot, raise the cancellation alone."""
    parts = leaves(exc)
    cancelled = [p for p in parts if isinstance(p, trio.Cancelled)]
    if cancelled and all(isinstance(p, trio.Cancelled) or moot(p) for p in parts):
        raise cancelled[0] from None


@contextmanager
def single_error() -> Iterator[None]:
    """Let one error out of nurseries as itself, not wrapped in groups.

    Several distinct errors still raise the group: hiding any would lie.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        found = leaves(group)
        if len(found) == 1:
            raise found[0] from None
        raise


def fixup_module_metadata(module_name: str, namespace: dict[str, object]) -> None:
    """Give each public object that ``module_name`` re-exports from a
    private module that module as its ``__module__``, as trio does: reprs,
    docs and tracebacks then say ``trio_cable.Cable``, where users import
    it from, not the private module it is defined in. Methods follow."""
    seen: set[int] = set()

    def fix_one(qualname: str, name: str, obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        module = getattr(obj, "__module__", None)
        if not isinstance(module, str) or not module.startswith("trio_cable."):
            return
        if not any(part.startswith("_") for part in module.split(".")):
            return  # defined in a public module: that is its name already
        try:
            setattr(obj, "__module__", module_name)  # noqa: B010  # any object
        except (AttributeError, TypeError):  # a builtin or slotted object
            return
        if isinstance(getattr(obj, "__name__", None), str):
            setattr(obj, "__name__", name)  # noqa: B010
            setattr(obj, "__qualname__", qualname)  # noqa: B010
        if isinstance(obj, type):
            for attr_name, attr_value in list(vars(obj).items()):
                if not attr_name.startswith("_"):
                    fix_one(f"{qualname}.{attr_name}", attr_name, attr_value)

    names = namespace.get("__all__", ())
    assert isinstance(names, list)
    for name in names:
        fix_one(name, name, namespace[name])
