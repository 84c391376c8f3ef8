"""A cable served over real sockets, for as long as a test needs it:
:func:`served` on a transport of ``serve_cable``, :func:`served_on` on
any server (those and Hypercorn)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.helpers.transports import Transport
from trio_cable import Cable, serve_cable
from trio_cable.asgi import CableApp

if TYPE_CHECKING:
    from hypercorn.typing import ASGIFramework

#: Every server a cable runs on: serve_cable's transports and Hypercorn.
Server = Literal["direct", "trio-websocket", "hypercorn"]
SERVERS: Final[tuple[Server, ...]] = ("direct", "trio-websocket", "hypercorn")

#: (tune_gc, the collector's thresholds before, its first one while serving):
#: what a server's default does with the garbage collector, on every server.
GC_THRESHOLD_CASES: Final = [
    (None, (700, 10, 10), 50_000),  # Python's defaults: raised meanwhile
    (None, (1_000, 10, 10), 1_000),  # the app chose: left alone
    (False, (700, 10, 10), 700),  # told not to
]


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


@asynccontextmanager
async def served_on(
    cable: Cable,
    server: Server,
    *,
    app: CableApp | None = None,
    max_message_size: int | None = None,
    hypercorn: dict[str, Any] | None = None,
) -> AsyncIterator[int]:
    """:func:`served`, or ``CableApp(cable)`` (or ``app``) under Hypercorn's
    trio worker (``hypercorn.trio.serve``, in this process, so a test can
    look at the cable while it serves); yields the port. ``max_message_size``
    goes to ``serve_cable`` or ``CableApp`` (their default if None);
    ``hypercorn`` sets Hypercorn's ``Config`` attributes."""
    if server != "hypercorn":
        assert hypercorn is None, "Hypercorn's settings for Hypercorn only"
        options: dict[str, Any] = {}
        if max_message_size is not None:
            options["max_message_size"] = max_message_size
        async with served(cable, server, **options) as port:
            yield port
        return
    if app is None:
        app = (
            CableApp(cable)
            if max_message_size is None
            else CableApp(cable, max_message_size=max_message_size)
        )
    else:
        assert max_message_size is None, "give the app its max_message_size"
    config = Config()
    config.bind = ["127.0.0.1:0"]
    for name, value in (hypercorn or {}).items():
        assert hasattr(config, name), name
        setattr(config, name, value)
    stop = trio.Event()
    # CableApp takes scopes and messages as plain mappings, Hypercorn's
    # types them as TypedDicts (which no MutableMapping parameter accepts).
    asgi_app = cast("ASGIFramework", app)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(serve, asgi_app, config, shutdown_trigger=stop.wait)
        )
        yield int(binds[0].rsplit(":", 1)[1])
        stop.set()
