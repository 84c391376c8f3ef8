"""The canary of the hostile-client suite: a well-behaved client counting
a numbered feed while an attack runs beside it.

The feed broadcasts ``{"i": n}`` on its own stream at :data:`FEED_RATE`
per second, each on a schedule fixed at the start; the canary's latency
for ``n`` is when it read ``n`` minus when ``n`` was due, so a process
too busy to broadcast on time counts as late too. On exit the feed
sends an end marker and the canary must have read every number, in
order, by then (loss 0); it is late only if it takes longer than
:data:`LOSS_BOUND` (then it is lost).
"""

from __future__ import annotations

import os
from array import array
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from tests.helpers.waiting import LOSS_BOUND
from tests.helpers.wsclient import RawClient, raw_connect
from trio_cable import Cable, Channel
from trio_cable.testing import identifier_for

__all__ = [
    "CANARY",
    "FEED_RATE",
    "CanaryReport",
    "canary_feed",
    "hostile_cable",
    "open_fds",
]

#: Broadcasts per second on the canary's stream.
FEED_RATE = 100
#: The canary's subscription.
CANARY = identifier_for("Room", room="canary")


def hostile_cable(**options: Any) -> Cable:
    """A cable with a ``Room`` channel streaming ``params["room"]`` and an
    ``echo`` action; pings rare, so that frame counts are the attack's."""
    options.setdefault("ping_interval", 3.0)
    cable = Cable(**options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            room = self.params.get("room")
            self.stream_from(room if isinstance(room, str) else "room")

        async def echo(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": data.get("n")})

    return cable


def open_fds() -> int:
    """File descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


@dataclass
class CanaryReport:
    """What the canary saw: every number it was owed, and how late.

    Kept in arrays, not lists: memory tests trace this process, and a
    list would hold every number the JSON decoder made (the canary's
    own allocations, in this file, are left out of those traces)."""

    sent: int = 0
    received: array[int] = field(default_factory=lambda: array("q"), repr=False)
    latencies: array[float] = field(default_factory=lambda: array("d"), repr=False)
    disconnected: bool = False
    #: Frames of its stream that were not the feed's (a storm's), read.
    others: int = 0
    finished: trio.Event = field(default_factory=trio.Event, repr=False)

    @property
    def lost(self) -> int:
        return self.sent - len(self.received)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (
            f"{len(self.received)}/{self.sent} received, latency p50 "
            f"{self.quantile(0.5) * 1000:.1f} ms, p99 "
            f"{self.quantile(0.99) * 1000:.1f} ms, max "
            f"{max(self.latencies) * 1000:.1f} ms"
        )


async def _feed(cable: Cable, report: CanaryReport, start: float) -> None:
    while True:
        await trio.sleep_until(start + report.sent / FEED_RATE)
        # Every number that is due, not one a wake-up: when a busy process
        # wakes this task late, the feed keeps its rate (as a broadcaster in
        # another process would) and the lateness measured is the server's,
        # not a feed slowed to one number per scheduling round.
        now = trio.current_time()
        while start + report.sent / FEED_RATE <= now:
            # Not awaited: cancelled between two broadcasts, never inside one.
            cable.broadcast_nowait("canary", {"i": report.sent})
            report.sent += 1


async def _read(client: RawClient, report: CanaryReport, start: float) -> None:
    while (frame := await client.receive()) is not None:
        message = frame.get("message")
        if not isinstance(message, dict):
            continue
        if message.get("end"):
            report.finished.set()
            return
        n = message.get("i")
        if n is None:
            report.others += 1
            continue  # not the feed's
        report.received.append(n)
        report.latencies.append(trio.current_time() - (start + n / FEED_RATE))
    report.disconnected = True
    report.finished.set()


@asynccontextmanager
async def canary_feed(cable: Cable, port: int) -> AsyncIterator[CanaryReport]:
    """A canary subscribed on ``port`` and the feed running for as long as
    the block runs; on exit every number must have reached it, in order
    (``AssertionError`` otherwise, ``trio.TooSlowError`` past the loss
    bound). Other broadcasts to its stream (a storm) it reads and skips."""
    report = CanaryReport()
    async with AsyncExitStack() as stack:
        client = await raw_connect(stack, port, welcome=True)
        await client.subscribe(CANARY)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read, client, report, start)
            async with trio.open_nursery() as feed:
                feed.start_soon(_feed, cable, report, start)
                try:
                    yield report
                finally:
                    feed.cancel_scope.cancel()
            # After the feed's last broadcast: the end marker.
            with trio.fail_after(LOSS_BOUND):
                cable.broadcast_nowait("canary", {"end": True})
                await report.finished.wait()
    assert not report.disconnected, "the canary was disconnected"
    assert report.received.tolist() == list(range(report.sent)), report.summary()
