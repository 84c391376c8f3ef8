"""What the socket-level fuzz and the churn soak share: the cable they
serve, the commands they send, the well-behaved clients that must get
every broadcast, and the measures of what a run left behind (tasks,
traced memory)."""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from typing import Any

import pytest
import trio

from tests.helpers.tasks import task_count
from tests.helpers.waiting import wait_until
from tests.helpers.wsclient import RawClient, raw_connect
from trio_cable import Cable, Channel
from trio_cable import direct as direct_module
from trio_cable.testing import identifier_for

ROOM = identifier_for("Room")


def fuzz_cable(**options: Any) -> Cable:
    options.setdefault("ping_interval", 0.5)
    cable = Cable(**options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            room = self.params.get("room", "other" if self.params else "room")
            if not isinstance(room, str):
                self.reject()
                return
            self.stream_from(room)

        async def echo(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": repr(data.get("n"))[:40]})  # repr: inf too

        async def receive(self, data: dict[str, Any]) -> None:
            self.transmit({"keys": len(data)})

    @cable.channel
    class Echo(Channel):
        async def subscribed(self) -> None:
            self.transmit({"params": dict(self.params)})

    return cable


#: trio-websocket keeps the task of a socket whose handshake failed until
#: connect_timeout (10 s by default) even once the peer is gone; a short
#: one keeps the wait for the task count to return short.
CONNECT_TIMEOUT = 2.0


# Allocations the test harness makes (pytest's log capture, tracebacks
# formatted for it), not the server.
HARNESS = [
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "*/logging/*"),
    tracemalloc.Filter(False, "*/_pytest/*"),
    tracemalloc.Filter(False, "*/traceback.py"),
    tracemalloc.Filter(False, "*/linecache.py"),
    # The canary's record of the feed grows with the test's time.
    tracemalloc.Filter(False, "*/tests/helpers/canary.py"),
]


class FrameCaches:
    """The direct transport's caches of encoded frames, recorded as it
    makes them. A cache is bounded (1,024 frames) and fills and empties
    with the traffic, so how full it happens to be at a snapshot says
    nothing about a leak: :func:`traced` empties them first, and what is
    compared is what could grow."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[Any] = []
        made = self.made
        original = getattr(direct_module, "FrameCache", None)
        if original is None:  # a transport without one: nothing to empty
            return

        class Recorded(original):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **options: Any) -> None:
                super().__init__(*args, **options)
                made.append(self)

        monkeypatch.setattr(direct_module, "FrameCache", Recorded)

    def clear(self) -> None:
        for cache in self.made:
            cache.clear()


def traced(caches: FrameCaches) -> tracemalloc.Snapshot:
    caches.clear()
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(HARNESS)


def memory_growth(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, bound: int, env: str
) -> int:
    """Traced memory ``after`` holds beyond ``before``. Over ``bound``, or
    with the environment variable ``env`` set, it prints the lines that
    grew most: where to look."""
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    if growth > bound or os.environ.get(env):
        for stat in after.compare_to(before, "lineno")[:15]:
            print(stat)
    return growth


async def drop_stale_deadlines() -> None:
    """Make trio forget the deadlines of cancel scopes that have exited.

    trio leaves an exited scope's deadline in its heap (holding the scope)
    until the deadline passes, or until stale entries outnumber live ones
    by ``DEADLINE_HEAP_MIN_PRUNE_THRESHOLD`` (1,000), when it prunes them
    all at its next scheduler pass. A memory comparison would count those
    scopes (a server's handshake deadlines are 10 s away): so add more
    stale entries than any live count can hide, and let one pass prune.
    (Should trio stop pruning this way, the memory bound fails: never a
    silent pass.)"""
    far = trio.current_time() + 3600
    for _ in range(5_000):
        with trio.CancelScope(deadline=far):  # noqa: ASYNC100 (only its entry counts)
            pass
    await trio.lowlevel.checkpoint()


async def settle(cable: Cable, tasks: int) -> int:
    """Wait until every connection is gone and the task count is back to
    ``tasks`` (or wait_until's loss bound has passed); return the count,
    for the caller to compare."""
    with suppress(trio.TooSlowError):
        await wait_until(lambda: not cable.connections and task_count() <= tasks)
    return task_count()


def cmd(command: Any, identifier: Any = ROOM, data: Any = None) -> str:
    out: dict[str, Any] = {"command": command, "identifier": identifier}
    if data is not None:
        out["data"] = data if isinstance(data, str) else json.dumps(data)
    return json.dumps(out)


async def subscribers(stack: AsyncExitStack, port: int, n: int) -> list[RawClient]:
    """``n`` raw clients subscribed to ``ROOM`` (the "room" stream), closed
    when ``stack`` unwinds."""
    clients = []
    for _ in range(n):
        client = await raw_connect(stack, port, welcome=True)
        await client.subscribe(ROOM)
        clients.append(client)
    return clients


async def read_broadcasts(client: RawClient, each: Callable[[int], None]) -> None:
    """Hand each broadcast's ``i`` to ``each`` until the end marker
    (``{"end": True}``); a disconnection before it fails."""
    while (frame := await client.receive()) is not None:
        message = frame["message"]
        if message.get("end"):
            return
        each(message["i"])
    raise AssertionError("a well-behaved client was disconnected")
