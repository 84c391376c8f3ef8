"""Small helpers shared by the transports and the testing tools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["leaves", "single_error"]


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups; ``[exc]`` otherwise."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


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
