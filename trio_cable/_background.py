"""The cable's background tasks: the ones registered to run beside it,
their nursery while it runs, and a guard that logs a crash instead of
taking the cable down."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

from ._errors import CableError

__all__ = ["Background", "BackgroundTasks", "guarded"]

log = logging.getLogger("trio_cable.cable")

TaskFn = Callable[..., Awaitable[object]]


class Background:
    """The cable's nursery for background tasks, and how to stop it."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery
        self.done = trio.Event()


class BackgroundTasks:
    """What runs beside a cable: ``fns``, each started (without arguments)
    every time the cable starts, and what :meth:`start_soon` adds for one
    run."""

    def __init__(self, fns: Iterable[Callable[[], Awaitable[object]]]) -> None:
        self.fns = list(fns)
        self._running: Background | None = None

    def add(self, fn: Callable[[], Awaitable[object]]) -> None:
        self.fns.append(fn)

    def start_soon(self, fn: TaskFn, args: tuple[Any, ...], name: str | None) -> None:
        """Start ``fn(*args)`` in the nursery of this run.

        Raises:
            CableError: the cable is not running (or is shutting down).
        """
        tasks = self._running
        if tasks is None or tasks.scope.cancel_called:
            raise CableError("the cable is not running: no nursery to start a task in")
        tasks.nursery.start_soon(guarded, fn, args, name=name or fn)

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Run every task of ``fns`` until :meth:`stop` (or cancelled)."""
        tasks = Background()
        with tasks.scope:
            try:
                async with trio.open_nursery() as nursery:
                    tasks.nursery = nursery
                    self._running = tasks
                    for fn in self.fns:
                        nursery.start_soon(guarded, fn, (), name=fn)
                    task_status.started()
                    await trio.sleep_forever()
            finally:
                self._running = None
                tasks.done.set()

    async def stop(self, grace: float) -> None:
        """Cancel the tasks and wait for them to end (shielded, for at most
        ``grace`` seconds); a no-op when none run."""
        tasks = self._running
        if tasks is None:
            return
        tasks.scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(grace):
            await tasks.done.wait()


async def guarded(fn: TaskFn, args: tuple[Any, ...]) -> None:
    # A failing background task is a bug to log, not a reason to take every
    # client down with the cable.
    try:
        await fn(*args)
    except Exception:
        log.exception("background task %s crashed", getattr(fn, "__qualname__", fn))
