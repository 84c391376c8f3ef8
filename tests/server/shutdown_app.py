"""A tiny cable app that test_shutdown.py runs under real Hypercorn.

``hypercorn --worker-class trio tests/server/shutdown_app.py:app``. One channel,
``FeedChannel``, streams from ``feed`` and counts its lifecycle hooks. When
the ASGI lifespan ends (Hypercorn runs lifespan shutdown only after every
connection has ended) the worker prints one line to stdout::

    SHUTDOWN-REPORT {"subscribed": 200, "unsubscribed": 200, ...}

so a test can check from outside that every ``unsubscribed()`` ran, the
hub was left empty and the background ticker ran and was cancelled. With
``STORM_RATE`` set in the environment, the worker broadcasts that many
frames a second to ``feed`` while it runs (a shutdown under load), from
when ``STORM_AFTER`` clients (default 0) have subscribed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from trio_cable import Cable, Channel
from trio_cable.asgi import CableApp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

REPORT_PREFIX = "SHUTDOWN-REPORT "

counts: Counter[str] = Counter()
cable = Cable()


@cable.channel
class FeedChannel(Channel):
    async def subscribed(self) -> None:
        counts["subscribed"] += 1
        self.stream_from("feed")

    async def unsubscribed(self) -> None:
        counts["unsubscribed"] += 1


@cable.background
async def ticker() -> None:
    # Background work beside the cable (issue 16): it must not slow the
    # shutdown down, and must be cancelled by it.
    try:
        while True:
            counts["ticks"] += 1
            await cable.broadcast("ticks", counts["ticks"])
            await trio.sleep(0.05)
    finally:
        counts["background cancelled"] += 1


cable_app = CableApp(cable)


def report() -> dict[str, Any]:
    stats = cable.hub.statistics()
    return {
        "pid": os.getpid(),
        "subscribed": counts["subscribed"],
        "unsubscribed": counts["unsubscribed"],
        "connections": len(cable.connections),
        "streams": stats.streams,
        "subscribers": stats.subscribers,
        "running": cable.is_running,
        "ticks": counts["ticks"],
        "background cancelled": counts["background cancelled"],
    }


async def storm(rate: float) -> None:
    n = 0
    after = int(os.environ.get("STORM_AFTER", "0"))
    while counts["subscribed"] < after:
        await trio.sleep(0.05)
    while True:
        await trio.sleep(1 / rate)
        if cable.is_running:
            cable.broadcast_nowait("feed", {"n": n})
            n += 1


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "lifespan":
        await cable_app(scope, receive, send)
        return
    try:
        async with trio.open_nursery() as nursery:
            rate = float(os.environ.get("STORM_RATE", "0"))
            if rate:
                nursery.start_soon(storm, rate)
            await cable_app(scope, receive, send)
            nursery.cancel_scope.cancel()
    finally:
        # A multiprocessing worker ends with os._exit: no atexit, so the
        # report is written here, unbuffered.
        os.write(1, (REPORT_PREFIX + json.dumps(report()) + "\n").encode())
