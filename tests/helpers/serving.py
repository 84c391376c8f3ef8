"""A cable served over real sockets, for as long as a test needs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from tests.helpers.transports import Transport
from trio_cable import Cable, serve_cable


@asynccontextmanager
async def served(
    cable: Cable, transport: Transport = "direct", **options: Any
) -> AsyncIterator[int]:
    """``serve_cable(cable, "127.0.0.1", 0, transport=transport, **options)``
    in the background; yields the port it listens on, and stops it on exit."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(
            partial(serve_cable, transport=transport, **options),
            cable,
            "127.0.0.1",
            0,
        )
        nursery.cancel_scope.cancel()
