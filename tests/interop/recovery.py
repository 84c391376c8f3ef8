"""The recovery run the interop tests share: 300 numbered broadcasts at
about 100/s over HTTP to a server process while something happens to the
client's connection midway (the proxy cuts it, its worker restarts, its
reconnect goes to another worker), then each must arrive exactly once, in
order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from tests.helpers import LOSS_BOUND, TcpProxy
from tests.interop.nodeclient import NodeClient
from tests.interop.servers import ServerProcess

__all__ = ["all_once_across_the_cut", "broadcast_numbered", "received_numbers"]

#: What happens midway: started in a task of its own, so the broadcasts
#: keep their pace while it takes its time (a worker restarting).
Cut = Callable[[], Awaitable[object]]


async def broadcast_numbered(
    server: ServerProcess,
    stream: str,
    count: int,
    rate: float,
    proxy: TcpProxy,
    cut: Cut | None = None,
) -> int:
    """``count`` numbered broadcasts as HTTP requests to the server, at
    about ``rate`` per second, with the proxy cut halfway (or ``cut``
    started then); how many were made while the client had no connection."""
    start = trio.current_time()
    unconnected = 0
    async with trio.open_nursery() as nursery:
        for n in range(count):
            if n == count // 2:
                if cut is None:
                    proxy.cut()
                else:
                    nursery.start_soon(cut)
            unconnected += proxy.open_connections == 0
            await server.broadcast(stream, {"n": n})
            # Pacing, not synchronisation: about `rate` per second.
            await trio.sleep_until(start + (n + 1) / rate)
    return unconnected


async def received_numbers(client: NodeClient, key: str, count: int) -> list[int]:
    numbers = []
    while len(numbers) < count:
        event = await client.expect({"event": "message", "key": key}, LOSS_BOUND)
        numbers.append(event["data"]["n"])
    return numbers


async def all_once_across_the_cut(
    server: ServerProcess,
    client: NodeClient,
    proxy: TcpProxy,
    stream: str,
    key: str,
    cut: Cut | None = None,
) -> None:
    """300 numbered broadcasts at about 100/s over HTTP to ``server`` while
    ``proxy`` cuts the client's connection midway (or ``cut`` runs then):
    every one arrives at subscription ``key`` exactly once, in order, some
    of them broadcast while the client had no connection (so from the
    history), and nothing more comes (a late duplicate would show)."""
    unconnected: list[int] = []

    async def broadcaster() -> None:
        unconnected.append(
            await broadcast_numbered(server, stream, 300, 100, proxy, cut)
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(broadcaster)
        numbers = await received_numbers(client, key, 300)
    assert numbers == list(range(300))
    assert unconnected[0] >= 1
    await client.assert_no_event({"event": "message"}, within=1.0)
