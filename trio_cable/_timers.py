"""A subscription's timers: the channel's ``@periodically`` methods and
those ``periodically()`` added, each in a task of its own (in the
connection's nursery) from the confirmation to the subscription's end.

Made at a subscription's first timer: most subscriptions have none.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Timer", "Timers"]

#: A timer: call ``fn`` every so many seconds.
Timer = tuple["Callable[[], Any]", float]


class Timers:
    """One subscription's timers.

    ``spawn`` starts a task in the connection's nursery; ``tick(fn, what)``
    makes one call of a timer, its errors handled as an action's.
    Cancellation: :meth:`stop` cancels every running timer at its next
    checkpoint; :meth:`stopped` also waits until each has ended.
    """

    __slots__ = ("_gone", "_scopes", "_spawn", "_stopped", "_tick", "specs")

    def __init__(
        self,
        spawn: Callable[[Callable[[], Awaitable[object]]], None],
        tick: Callable[[Callable[[], Any], str], Awaitable[None]],
    ) -> None:
        self._spawn = spawn
        self._tick = tick
        #: Every timer: what a kept session carries to the next connection.
        self.specs: list[Timer] = []
        self._scopes: list[trio.CancelScope] = []
        self._stopped = False
        self._gone: trio.Event | None = None  # set as the last one ends

    def add(self, fn: Callable[[], Any], seconds: float, *, run: bool) -> None:
        """One more timer; ``run``: start it now (else :meth:`run_all`)."""
        self.specs.append((fn, seconds))
        if run:
            self._spawn(partial(self._every, fn, seconds))

    def run_all(self) -> None:
        """Start every timer, each in a task of its own."""
        for fn, seconds in self.specs:
            self._spawn(partial(self._every, fn, seconds))

    def stop(self) -> None:
        """No timer runs again (one in a worker thread ends when its call
        returns)."""
        self._stopped = True
        for scope in self._scopes:
            scope.cancel()

    async def stopped(self) -> None:
        """:meth:`stop`, then wait until the last timer task has ended."""
        self.stop()
        if self._scopes:
            self._gone = trio.Event()
            await self._gone.wait()

    async def _every(self, fn: Callable[[], Any], seconds: float) -> None:
        """One timer: ``fn`` every ``seconds`` (between the end of a call and
        the next), until stopped."""
        if self._stopped:
            return
        scope = trio.CancelScope()
        self._scopes.append(scope)
        name = getattr(fn, "__name__", repr(fn))
        try:
            with scope:
                while True:
                    await trio.sleep(seconds)
                    await self._tick(fn, f"timer {name!r}")
        finally:
            self._scopes.remove(scope)
            if not self._scopes and self._gone is not None:
                self._gone.set()
