"""Recovery across a dropped connection, the same for every client.

:func:`all_once_across_a_drop` makes numbered broadcasts as HTTP requests
to a server, drops the client's connection midway (a
:class:`Disruption`), and checks that the client received each one exactly
once, in order. The client is a callable that waits for numbers (a Node
client, a Chromium page, the Python client); the server side is a
:class:`ServerSide`: where the client connects, how to broadcast, what
drops the client, and the server's stats (its ``subscribed()`` count).

The side here is :func:`cut_between`: a :class:`~.tcp_proxy.TcpProxy`
between the client and a server process, cut midway (the server is
untouched). :mod:`tests.helpers.workers` adds the sides of two processes
on one Redis (the client's worker restarted; its reconnect landing on the
other worker); the client tests take the side as a parameter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from tests.helpers.tcp_proxy import TcpProxy, tcp_proxy

__all__ = [
    "Disruption",
    "ProxyCut",
    "ServerSide",
    "all_once_across_a_drop",
    "broadcast_numbered",
    "cut_between",
]

#: Broadcast ``data`` to ``stream`` from outside any client (HTTP).
Broadcast = Callable[[str, Any], Awaitable[object]]
#: Wait until the client has received at least ``n`` numbers; all of them.
Received = Callable[[int], Awaitable[list[int]]]


class Disruption(Protocol):
    """What drops the client's connection, once, midway."""

    def client_connected(self) -> bool:
        """Whether the client has a connection to the server now."""
        ...

    async def disrupt(self) -> None:
        """Drop the client's connection (it must come back by itself)."""
        ...

    async def verify(self) -> None:
        """Once the client has everything: assert that the drop happened
        as described and that the client came back where it should."""
        ...


@dataclass
class ProxyCut:
    """The network between the client and the server breaks, once."""

    proxy: TcpProxy

    def client_connected(self) -> bool:
        return self.proxy.open_connections > 0

    async def disrupt(self) -> None:
        self.proxy.cut()

    async def verify(self) -> None:
        await trio.lowlevel.checkpoint()
        assert self.proxy.cuts == 1, self.proxy.cuts
        self.assert_back()

    def assert_back(self) -> None:
        """The client is connected through the proxy again (a reconnect to
        a server still starting is accepted by the proxy too, and closed;
        a browser may hold an idle socket of its own beside its cable's)."""
        assert self.proxy.accepted >= 2, self.proxy.accepted
        assert self.proxy.open_connections >= 1, "not back through the proxy"


class ServerProcessLike(Protocol):
    """What a side needs of ``tests.interop.servers.ServerProcess``."""

    port: int

    async def broadcast(self, stream: str, data: Any) -> int: ...

    async def stats(self) -> dict[str, Any]: ...


@dataclass
class ServerSide:
    """A server as a recovery test's client sees it."""

    #: Where the client's cable is (``ws://.../cable``), and the same host
    #: over HTTP (for a page, so that its cable is same-origin).
    url: str
    http_url: str
    broadcast: Broadcast
    disruption: Disruption
    #: The server's ``GET /stats`` (chat_app's: events counted by name).
    stats: Callable[[], Awaitable[dict[str, Any]]]
    #: Whether the client's session outlives the drop, so the client is
    #: restored (no second ``subscribed()``). A worker killed outright
    #: never writes the session it held: the client comes back with a
    #: fresh one, subscribes again and recovers from the history.
    keeps_session: bool = True


@asynccontextmanager
async def cut_between(server: ServerProcessLike) -> AsyncIterator[ServerSide]:
    """``server`` behind a :class:`TcpProxy` the test cuts midway."""
    async with tcp_proxy(server.port) as proxy:
        host = f"127.0.0.1:{proxy.port}"
        yield ServerSide(
            url=f"ws://{host}/cable",
            http_url=f"http://{host}",
            broadcast=server.broadcast,
            disruption=ProxyCut(proxy),
            stats=server.stats,
        )


async def broadcast_numbered(
    broadcast: Broadcast,
    stream: str,
    count: int,
    rate: float,
    disruption: Disruption,
) -> int:
    """``{"n": 0}`` ... ``{"n": count - 1}`` to ``stream`` at about ``rate``
    per second, disrupted halfway; how many were made while the client had
    no connection."""
    start = trio.current_time()
    unconnected = 0
    for n in range(count):
        if n == count // 2:
            await disruption.disrupt()
        unconnected += not disruption.client_connected()
        await broadcast(stream, {"n": n})
        # Pacing, not synchronisation: about `rate` per second.
        await trio.sleep_until(start + (n + 1) / rate)
    return unconnected


async def all_once_across_a_drop(
    broadcast: Broadcast,
    stream: str,
    received: Received,
    disruption: Disruption,
    count: int = 300,
    rate: float = 100.0,
) -> list[int]:
    """``count`` numbered broadcasts at about ``rate``/s while
    ``disruption`` drops the client midway, then one more, ``{"n": count}``:
    the client gets every one exactly once, in order, some of them
    broadcast while it had no connection (so from the history). The last
    one comes after all the others on one connection, so a late duplicate
    or a reordering would show before it. Then ``disruption.verify()``.
    Returns the numbers."""
    unconnected: list[int] = []

    async def broadcaster() -> None:
        made = await broadcast_numbered(broadcast, stream, count, rate, disruption)
        unconnected.append(made)
        await broadcast(stream, {"n": count})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(broadcaster)
        numbers = await received(count + 1)
    assert numbers[: count + 1] == list(range(count + 1)), _first_difference(numbers)
    assert len(numbers) == count + 1, numbers[count:]
    assert unconnected[0] >= 1, "no broadcast was made while the client was away"
    await disruption.verify()
    print(f"\n{unconnected[0]} of {count} broadcast while the client was away")
    return numbers


def _first_difference(numbers: list[int]) -> str:
    for index, n in enumerate(numbers):
        if n != index:
            return f"at {index}: {numbers[max(0, index - 3) : index + 4]}"
    return f"{len(numbers)} numbers"
