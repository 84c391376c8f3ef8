"""``@anycable/web`` in Node against two real server processes sharing one
test-started redis-server: the history kept in Redis carries a client
across the restart of its worker and across a reconnect that lands on the
other worker, and a lost epoch is reported to it.

Each worker is ``tests/apps/chat_app.py`` on the direct transport (its
``feed:*`` streams keep history); the client reaches its worker through a
TCP proxy the test points and cuts; broadcasts are HTTP requests to a
worker (``POST /broadcast``). The workers and the drops are
``tests/helpers/workers.py``'s, which cable.js and the Python client's
recovery tests take as their server sides too.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    RedisServer,
    all_once_across_a_drop,
    tcp_proxy,
)
from tests.helpers.workers import REDIS_DROPS, Drop, server_side, two_workers
from tests.interop.nodeclient import (
    ANYCABLE_DRIVER,
    NodeClient,
    open_ac_client,
)

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]


@asynccontextmanager
async def subscribed_through(url: str, room: str) -> AsyncIterator[NodeClient]:
    """An @anycable/web client of the cable at ``url``, subscribed to the
    feed of ``room`` (reconnecting 300 ms after a drop)."""
    async with open_ac_client(driver=ANYCABLE_DRIVER) as client:
        await client.send({"cmd": "connect", "url": url, "reconnectDelay": 300})
        params = {"room": room}
        await client.send(
            {"cmd": "subscribe", "key": "f", "channel": "FeedChannel", "params": params}
        )
        await client.expect({"event": "subscribed", "key": "f"}, LOSS_BOUND)
        yield client


async def received_numbers(client: NodeClient, count: int) -> list[int]:
    numbers: list[int] = []
    while len(numbers) < count:
        event = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
        numbers.append(event["data"]["n"])
    return numbers


@pytest.mark.parametrize("drop", REDIS_DROPS)
async def test_all_300_once_in_order_across_a_drop_between_workers(
    drop: Drop, redis_server: RedisServer, tmp_path: Path
) -> None:
    """``restart``: the client's worker is killed midway and started again
    while the other worker takes the broadcasts; the client comes back to
    the new process, which replays what it missed from Redis.
    ``other-worker``: midway the proxy is pointed at the other worker and
    the client's connection cut; it reconnects there and recovers from
    Redis (the broadcasts go on through the first worker)."""
    room = uuid.uuid4().hex[:8]
    async with (
        server_side("direct", drop, tmp_path, redis_server) as side,
        subscribed_through(side.url, room) as client,
    ):
        await all_once_across_a_drop(
            side.broadcast,
            f"feed:{room}",
            partial(received_numbers, client),
            side.disruption,
        )
        await client.assert_no_event({"event": "uncaught"}, within=0)


@pytest.mark.parametrize("loss", ["flushall", "restart"])
async def test_a_lost_epoch_is_reported_and_live_goes_on(
    loss: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis loses its data (FLUSHALL, or a restart without persistence):
    the client's positions name an epoch that is gone, so on its next
    connection it is told (``history_not_found``), and live broadcasts
    follow in a new epoch, counting from 1."""
    room = uuid.uuid4().hex[:8]
    stream = f"feed:{room}"
    with two_workers(redis_server, tmp_path) as (mine, other):
        async with (
            tcp_proxy(mine.port) as proxy,
            subscribed_through(f"ws://127.0.0.1:{proxy.port}/cable", room) as client,
        ):
            await other.broadcast(stream, {"n": 0})
            first = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
            if loss == "flushall":
                with redis_server.client() as redis:
                    redis.flushall()
            else:
                redis_server.kill()
                redis_server.start()
                for worker in (mine, other):
                    with trio.fail_after(LOSS_BOUND):
                        while not (await worker.stats())["redis"]["connected"]:
                            await trio.sleep(0.05)  # another process: no event
            proxy.cut()
            await client.expect(
                {"event": "info", "key": "f", "type": "history_not_found"}, LOSS_BOUND
            )
            await other.broadcast(stream, {"n": 1})
            got = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
            assert got["data"] == {"n": 1}
            assert got["meta"]["offset"] == 1
            assert got["meta"]["epoch"] != first["meta"]["epoch"]
            await client.assert_no_event({"event": "uncaught"}, within=0)
