"""A bounded single-consumer queue, lighter than a trio memory channel.

A connection keeps one for outgoing frames and one per subscription for
commands. A trio memory channel pair costs about 2.4 KB before it holds
anything (a state object, a deque, two ordered dicts, two endpoint
objects); this costs about 100 bytes, which matters at tens of thousands
of idle connections. It has one consumer task, never blocks a producer
(:meth:`put_nowait` reports a full queue instead), and hands the consumer
everything queued at once (:meth:`get_batch`) so the writer can drain a
burst without a task switch per frame.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

__all__ = ["Queue"]

T = TypeVar("T")


class Queue(Generic[T]):
    __slots__ = ("_closed", "_items", "_waiter", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: list[T] = []
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put_nowait(self, item: T) -> bool:
        """Queue ``item``; False if the queue is full or closed."""
        if self._closed or len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        self._wake()
        return True

    def clear(self) -> None:
        self._items = []

    def drain(self) -> list[T]:
        """Take everything queued, without waiting."""
        items, self._items = self._items, []
        return items

    def close(self) -> None:
        """No more puts; the consumer gets what is queued, then EndOfChannel."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            task, self._waiter = self._waiter, None
            trio.lowlevel.reschedule(task)

    async def _wait(self) -> None:
        if self._items:
            await trio.lowlevel.checkpoint()
            return
        while not self._items:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.EndOfChannel
            if self._waiter is not None:
                raise trio.BusyResourceError("a Queue has one consumer")
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def get(self) -> T:
        """The oldest item; raises ``trio.EndOfChannel`` once closed and empty."""
        await self._wait()
        return self._items.pop(0)

    async def get_batch(self) -> list[T]:
        """Everything queued (at least one item), oldest first."""
        await self._wait()
        items, self._items = self._items, []
        return items
