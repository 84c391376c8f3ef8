"""The hostile suite's cable under a real Hypercorn process
(test_hostile_fragments.py): ``hypercorn --worker-class trio
tests/server/hostile_app.py:app``, with the repository on ``PYTHONPATH``.

``HOSTILE_OPTIONS`` (JSON) holds the cable's options. The worker runs the
canary's feed itself: ``{"i": n, "due": t}`` on the ``canary`` stream,
100 a second on a schedule fixed at startup (``t``: when ``n`` was due,
``time.time()``), so a client on this machine can tell how late each
came. ``GET /stats`` is the cable's stats (with the worker's pid);
``GET /unfinished`` the bytes Hypercorn's streams hold for messages not
yet complete.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from tests.helpers.canary import FEED_RATE, hostile_cable
from trio_cable.asgi import CableApp
from trio_cable.transports.hypercorn_ws import BoundedWSStream

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

cable = hostile_cable(**json.loads(os.environ.get("HOSTILE_OPTIONS", "{}")))


@cable.background
async def feed() -> None:
    start, n = time.time(), 0
    while True:
        due = start + n / FEED_RATE
        await trio.sleep(max(0.0, due - time.time()))
        cable.broadcast_nowait("canary", {"i": n, "due": due})
        n += 1


async def unfinished(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /unfinished``: for the test to wait on, not a way to serve."""
    if scope["type"] != "http":
        return  # no lifespan of its own
    # Instances refer to their class: this finds them without a list of
    # every object in the process (which would grow the RSS measured).
    held = sum(
        o.unfinished_bytes
        for o in gc.get_referrers(BoundedWSStream)
        if isinstance(o, BoundedWSStream)
    )
    body = str(held).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = CableApp(cable, unfinished, stats_path="/stats")
