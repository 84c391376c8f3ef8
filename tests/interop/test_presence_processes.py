"""Presence when a worker dies: a chat_app server process on a real
redis-server holds members; it is killed with SIGKILL (no goodbye, no
leave); the two surviving workers (cables in this process, on the same
Redis) see those members leave within the expiry, each leave announced
exactly once, by one of them."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from tests.helpers.redis_server import RedisServer
from tests.helpers.waiting import wait_until
from tests.helpers.wsclient import command, raw_connect
from tests.interop.servers import ServerProcess
from trio_cable import Channel, PresenceEvent, RedisCable
from trio_cable._redis_presence import RedisPresence
from trio_cable.testing import TestClient, cable_test_client, identifier_for

EXPIRY = 1.0
LOBBY = identifier_for("PresenceChannel", room="lobby")


def survivor(url: str) -> RedisCable:
    cable = RedisCable(url, presence_expiry=EXPIRY, presence_heartbeat=EXPIRY / 4)

    @cable.channel
    class PresenceChannel(Channel):  # as in tests/apps/chat_app.py
        async def subscribed(self) -> None:
            self.stream_from(f"presence:{self.params['room']}", presence=True)

    return cable


async def events_seen(client: TestClient, into: list[tuple[str, str]]) -> None:
    """Record each presence event a plain client gets: (type, id)."""
    while True:
        frame = await client.receive()
        message = frame.get("message")
        if isinstance(message, dict) and "presence" in message:
            into.append((message["presence"]["type"], message["presence"]["id"]))


def beats(cable: RedisCable) -> int:
    backend = cable.presence_tracker.backend
    assert isinstance(backend, RedisPresence)
    return backend.beats


async def test_a_killed_workers_members_leave_once_within_the_expiry(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "TRIO_CABLE_REDIS_URL": redis_server.url,
        "CHAT_APP_PRESENCE_EXPIRY": str(EXPIRY),
    }
    events: list[tuple[int, str, str]] = []
    b, c = survivor(redis_server.url), survivor(redis_server.url)
    for n, cable in enumerate((b, c)):

        def record(event: PresenceEvent, n: int = n) -> None:
            events.append((n, event.type, event.id))

        cable.on_presence(record)
    with ServerProcess("direct", tmp_path, env=env) as doomed:
        async with (
            AsyncExitStack() as stack,
            b.running(),
            c.running(),
            cable_test_client(b) as on_b,
            cable_test_client(c) as on_c,
        ):
            for client in (on_b, on_c):
                await client.subscribe("PresenceChannel", room="lobby")
            seen_b: list[tuple[str, str]] = []
            seen_c: list[tuple[str, str]] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(events_seen, on_b, seen_b)
                nursery.start_soon(events_seen, on_c, seen_c)
                await on_b.send_raw(_join("stays"))
                for id in ("k1", "k2"):
                    victim = await raw_connect(stack, doomed.port, welcome=True)
                    await victim.send_text(command("subscribe", LOBBY))
                    frame = await victim.receive()
                    assert frame is not None
                    assert frame["type"] == "confirm_subscription"
                    await victim.send_text(_join(id))
                await wait_until(lambda: len(seen_b) == 3 and len(seen_c) == 3)
                assert sorted(await c.presence("presence:lobby")) == [
                    "k1",
                    "k2",
                    "stays",
                ]
                doomed.kill()
                killed = trio.current_time()
                await wait_until(lambda: len(seen_b) == 5 and len(seen_c) == 5)
                took = trio.current_time() - killed
                # Then both survivors beat (and reaped) twice more: a second
                # reaper would have announced again by now.
                done = beats(b) + 2, beats(c) + 2
                await wait_until(lambda: beats(b) >= done[0] and beats(c) >= done[1])
                nursery.cancel_scope.cancel()
            left_b = [id for kind, id in seen_b if kind == "leave"]
            left_c = [id for kind, id in seen_c if kind == "leave"]
            assert sorted(left_b) == sorted(left_c) == ["k1", "k2"]
            leaves = [e for e in events if e[1] == "leave"]
            assert sorted(e[2] for e in leaves) == ["k1", "k2"]
            assert len({e[0] for e in leaves}) == 1  # one survivor reaped them
            # Within expiry + a heartbeat + a generous allowance for a loaded
            # machine (a failure bound, not the way we wait).
            assert took < EXPIRY + EXPIRY / 4 + 10, took
            assert await b.presence("presence:lobby") == {"stays": None}


def _join(id: str) -> str:
    presence: dict[str, Any] = {"id": id, "info": None}
    return json.dumps({"command": "join", "identifier": LOBBY, "presence": presence})
