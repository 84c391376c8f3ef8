"""Calling a channel's code: ``async def`` in the task, plain ``def`` in
a worker thread; hooks with a time limit."""

from __future__ import annotations

import functools
import inspect
import logging
import math
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._channel import Channel

__all__ = ["call", "call_hook", "rescued"]


async def call(fn: Callable[..., Any], *args: Any) -> None:
    """Await ``fn(*args)`` if it is ``async def``, else run it in a worker
    thread."""
    if inspect.iscoroutinefunction(fn):
        await fn(*args)
    else:
        await trio.to_thread.run_sync(fn, *args)


#: Whether a hook (a class's function) is ``async def``: asked for every
#: subscribe, and inspect's answer is a few calls deep (unwrapping partials
#: and methods); bounded, for classes made and dropped at run time.
_is_async: Final = functools.lru_cache(maxsize=1024)(inspect.iscoroutinefunction)


#: Worker threads for hooks are counted by trio's default limiter, taken
#: before the hook's own time starts (see call_hook); this one only passes.
_TAKEN: Final = trio.CapacityLimiter(1 << 30)


async def call_hook(channel: Channel, hook: str, limit: float | None = None) -> bool:
    """Run a hook (``async def`` here, plain ``def`` in a worker thread);
    True if it ran out of ``limit`` seconds and was cancelled."""
    fn = getattr(type(channel), hook)
    if _is_async(fn):
        if limit is None:
            await fn(channel)
            return False
        with trio.move_on_after(limit) as scope:
            await fn(channel)
        return scope.cancelled_caught
    async with trio.to_thread.current_default_thread_limiter():
        with trio.move_on_after(math.inf if limit is None else limit) as scope:
            await trio.to_thread.run_sync(fn, channel, limiter=_TAKEN)
    return scope.cancelled_caught


async def rescued(
    channel: Channel, exc: Exception, where: str, log: logging.Logger
) -> tuple[bool, Any]:
    """Whether a ``rescue_from`` handler of ``channel`` handled ``exc``,
    and what it returned. A handler that raises has not handled it (its
    own error is logged on ``log``, ``where`` naming the subscription):
    the caller reports ``exc``."""
    for types, handler in channel._rescuers:
        if isinstance(exc, types):
            try:
                if inspect.iscoroutinefunction(handler):
                    value = await handler(channel, exc)
                else:
                    value = await trio.to_thread.run_sync(handler, channel, exc)
            except Exception:
                log.exception(
                    "%s: the rescue_from handler %s failed", where, handler.__name__
                )
                return False, None
            return True, value
    return False, None
