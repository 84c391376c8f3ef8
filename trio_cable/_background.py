"""The cable's background tasks: their nursery, and a guard that logs a
crash instead of taking the cable down."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["Background", "guarded"]

log = logging.getLogger("trio_cable.cable")


class Background:
    """The cable's nursery for background tasks, and how to stop it."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery
        self.done = trio.Event()


async def guarded(fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]) -> None:
    # A failing background task is a bug to log, not a reason to take every
    # client down with the cable.
    try:
        await fn(*args)
    except Exception:
        log.exception("background task %s crashed", getattr(fn, "__qualname__", fn))
