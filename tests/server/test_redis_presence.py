"""Presence across processes through a real redis-server: two cables (two
workers) on one Redis see the same members, announce each join and leave
once, and ride out a Redis restart with no false leave. (A worker killed
with SIGKILL: tests/interop/test_presence_processes.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.helpers.redis_server import RedisServer, assert_nothing_left
from tests.helpers.waiting import wait_until
from trio_cable import Channel, PresenceEvent, RedisCable
from trio_cable._redis_presence import RedisPresence
from trio_cable.testing import TestClient, cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]
ROOM = identifier_for("Room", room="r")


def make_cable(url: str, **options: Any) -> RedisCable:
    cable = RedisCable(
        url, presence_heartbeat=0.2, presence_expiry=1.0, presence_grace=0, **options
    )

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}", presence=True)

    return cable


def join(id: str, info: Any = None) -> str:
    presence = {"id": id, "info": info}
    return json.dumps({"command": "join", "identifier": ROOM, "presence": presence})


async def next_presence(client: TestClient) -> dict[str, Any]:
    while True:
        frame = await client.receive()
        if frame.get("type") == "presence":
            return dict(frame["message"])


def backend(cable: RedisCable) -> RedisPresence:
    found = cable.presence_tracker.backend
    assert isinstance(found, RedisPresence)
    return found


@asynccontextmanager
async def two_workers(
    url: str, events: list[tuple[str, str, str]]
) -> AsyncIterator[tuple[RedisCable, RedisCable]]:
    a, b = make_cable(url), make_cable(url)
    for name, cable in (("a", a), ("b", b)):

        def record(event: PresenceEvent, name: str = name) -> None:
            events.append((name, event.type, event.id))

        cable.on_presence(record)
    async with a.running(), b.running():
        yield a, b


async def test_members_of_either_worker_are_listed_on_both(
    redis_server: RedisServer,
) -> None:
    events: list[tuple[str, str, str]] = []
    async with (
        two_workers(redis_server.url, events) as (a, b),
        cable_test_client(a, subprotocols=EXT) as on_a,
        cable_test_client(b, subprotocols=EXT) as on_b,
        cable_test_client(b, subprotocols=EXT) as tab2_on_b,
        cable_test_client(b, subprotocols=EXT) as bob,
    ):
        for client in (on_a, on_b, tab2_on_b, bob):
            await client.subscribe("Room", room="r")
        await on_a.send_raw(join("ann", {"n": 1}))
        for client in (on_a, on_b):
            assert await next_presence(client) == {
                "type": "join",
                "id": "ann",
                "info": {"n": 1},
            }
        # The same id on the other worker, in two tabs: no second join.
        await on_b.send_raw(join("ann", {"n": 2}))
        await tab2_on_b.send_raw(join("ann", {"n": 2}))
        # Its own list comes after its join (in order on one subscription):
        # ann's new info is written to Redis before bob's join is.
        ask = json.dumps({"command": "presence", "identifier": ROOM})
        await tab2_on_b.send_raw(ask)
        while (listed := await next_presence(tab2_on_b))["type"] != "info":
            pass
        assert listed["total"] == 1
        await bob.send_raw(join("bob", None))
        assert await next_presence(on_a) == {"type": "join", "id": "bob", "info": None}
        want = {"ann": {"n": 2}, "bob": None}
        for cable in (a, b):
            assert await cable.presence("room:r") == want
        await bob.send_raw(json.dumps({"command": "presence", "identifier": ROOM}))
        while (info := await next_presence(bob))["type"] != "info":
            pass
        assert info["total"] == 2
        # ann leaves on a: still held on b (two tabs); then on b too.
        await on_a.send_raw(json.dumps({"command": "leave", "identifier": ROOM}))
        await on_b.send_raw(json.dumps({"command": "leave", "identifier": ROOM}))
        await tab2_on_b.unsubscribe("Room", room="r")
        assert await next_presence(on_a) == {"type": "leave", "id": "ann"}
        assert await cable.presence("room:r") == {"bob": None}
        # Each event once, announced by one worker.
        assert sorted(e[1:] for e in events) == [
            ("join", "ann"),
            ("join", "bob"),
            ("leave", "ann"),
        ]
        # b shuts down with bob still connected (the grace is 0): it does
        # not announce bob's leave itself (the other workers reap it).
        await b.shutdown()
        assert len(events) == 3, events


async def test_a_redis_restart_announces_no_leave_and_the_view_converges(
    redis_server: RedisServer,
) -> None:
    events: list[tuple[str, str, str]] = []
    async with (
        two_workers(redis_server.url, events) as (a, b),
        cable_test_client(a, subprotocols=EXT) as on_a,
        cable_test_client(b, subprotocols=EXT) as on_b,
        cable_test_client(a, subprotocols=EXT) as cat,
    ):
        for client in (on_a, on_b, cat):
            await client.subscribe("Room", room="r")
        await on_a.send_raw(join("ann"))
        await on_b.send_raw(join("bob"))
        await wait_until(lambda: len(events) == 2)
        redis_server.kill()
        await wait_until(lambda: not backend(a).connected and not backend(b).connected)
        # Away: each worker still lists its own; a join here is not lost.
        assert await a.presence("room:r") == {"ann": None}
        await cat.send_raw(join("cat"))
        await wait_until(lambda: "cat" in a.presence_tracker.local_members("room:r"))
        redis_server.start()  # empty: it lost every member
        await wait_until(lambda: backend(a).connected and backend(b).connected)
        # Past the time a worker waits before reaping, and a beat more.
        beats = backend(a).beats, backend(b).beats
        reap_after = 1.0 / 0.2 + 2
        await wait_until(
            lambda: (
                backend(a).beats >= beats[0] + reap_after
                and backend(b).beats >= beats[1] + reap_after
            )
        )
        for cable in (a, b):
            assert await cable.presence("room:r") == {
                "ann": None,
                "bob": None,
                "cat": None,
            }
        # No leave at all; cat's join announced once, after the outage.
        assert sorted(e[1:] for e in events) == [
            ("join", "ann"),
            ("join", "bob"),
            ("join", "cat"),
        ]


@pytest.mark.parametrize("situation", ["connected", "redis_down"])
async def test_shutdown_is_prompt_and_leaves_nothing(
    redis_server: RedisServer, situation: str
) -> None:
    cable = make_cable(redis_server.url)
    async with cable.running(), cable_test_client(cable, subprotocols=EXT) as c:
        await c.subscribe("Room", room="r")
        await c.send_raw(join("ann"))
        await next_presence(c)  # written to Redis, announced
        if situation == "redis_down":
            redis_server.kill()
            await wait_until(lambda: not backend(cable).connected)
        stopping = trio.current_time()
    elapsed = trio.current_time() - stopping
    # Milliseconds even on a loaded machine; a bound under the 5 s socket
    # timeout that a shutdown waiting on its threads would take.
    assert elapsed < 2.0, elapsed
    assert_nothing_left(redis_server)
