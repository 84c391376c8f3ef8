"""The cable's one ping timer: a ping to every connection every
``ping_interval``, and the ``no_pong`` check of extended clients."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, NoReturn, Protocol

import trio

from .protocol.codec import encode_ping

if TYPE_CHECKING:
    from ._connection import Connection
    from ._logsummary import LogSummary
    from ._options import CableOptions

__all__ = ["ping_forever"]

log = logging.getLogger("trio_cable.cable")


class PingHost(Protocol):
    @property
    def options(self) -> CableOptions: ...
    @property
    def connections(self) -> Collection[Connection]: ...
    def count(self, name: str, n: int = 1) -> None: ...


async def ping_forever(cable: PingHost, refusals: LogSummary) -> NoReturn:
    """Ping every ready connection of ``cable``, forever; close those of
    the extended protocol silent for ``pong_timeout``.

    One timer for every connection: no task per connection just to ping,
    and pings still flow when actions are slow.
    """
    options = cable.options
    pong_timeout = options.pong_timeout
    while True:
        await trio.sleep(options.ping_interval)
        refusals.tick()
        frame = encode_ping(int(time.time()))
        silent_since = (
            -math.inf if pong_timeout is None else trio.current_time() - pong_timeout
        )
        _ping_each(cable, frame, silent_since)


def _ping_each(cable: PingHost, frame: str, silent_since: float) -> None:
    # Not inlined: a loop variable would keep a closed connection alive
    # while the timer sleeps.
    for conn in [c for c in cable.connections if c.ready]:
        protocol = conn.protocol
        if protocol.last_seen < silent_since and protocol.dialect.extended:
            cable.count("no_pong")
            log.info("conn %s: no pong for %gs", conn.id, cable.options.pong_timeout)
            conn.close("no_pong", reconnect=True)
        elif protocol.dialect.pings:
            conn.enqueue(frame)
