"""Presence across server processes on a real redis-server.

* A worker dies: a chat_app server process holds members; it is killed
  with SIGKILL (no goodbye, no leave); the two surviving workers (cables
  in this process, on the same Redis) see those members leave within the
  expiry, each leave announced exactly once, by one of them.
* Redis restarts under two chat_app processes: killed with SIGKILL and
  started again on its port, empty or with the data it had (every
  worker's claim in it long run out), after an outage longer than the
  expiry: no leave is announced to the observers on either worker, both
  list every member again (the one who joined during the outage too),
  and joins and leaves flow as before."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.helpers.redis_server import RedisServer
from tests.helpers.tcp_proxy import tcp_proxy
from tests.helpers.waiting import LOSS_BOUND, wait_until
from tests.helpers.wsclient import RawClient, command, raw_connect
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


class Observer:
    """A plain client on one worker subscribed to the lobby: each presence
    event it gets, in order, and the member lists it asked for."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.events: list[tuple[str, str]] = []
        self.lists: list[list[str]] = []

    async def read(self) -> None:
        while (frame := await self.client.receive()) is not None:
            message = frame.get("message")
            if isinstance(message, dict) and "presence" in message:
                event = message["presence"]
                if event["type"] == "info":
                    self.lists.append(sorted(r["id"] for r in event["records"]))
                else:
                    self.events.append((event["type"], event["id"]))

    async def members(self) -> list[str]:
        """The member list the worker answers (a ``presence`` command)."""
        asked = len(self.lists)
        await self.client.send_text(command("presence", LOBBY))
        await wait_until(lambda: len(self.lists) > asked)
        return self.lists[asked]

    def saw(self, kind: str) -> list[str]:
        return [id for type_, id in self.events if type_ == kind]


async def member(stack: AsyncExitStack, worker: ServerProcess, id: str) -> RawClient:
    """A client of ``worker`` that joins the lobby as ``id``."""
    client = await raw_connect(stack, worker.port, welcome=True)
    await client.subscribe(LOBBY)
    await client.send_text(_join(id))
    return client


async def until_stats(
    workers: Sequence[ServerProcess], holds: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Poll each worker's ``/stats`` until ``holds`` is true of all (a
    loss bound, not a latency budget); returns their presence stats."""
    with trio.fail_after(LOSS_BOUND):
        while True:
            found = [(await w.stats())["presence"] for w in workers]
            if all(holds(stats) for stats in found):
                return found
            await trio.sleep(0.02)


#: The restart test's expiry (a heartbeat is a quarter of it): the time a
#: worker may be back later than the other without being taken for dead.
RESTART_EXPIRY = 6.0


@pytest.mark.parametrize("data", ["lost", "kept"])
async def test_a_redis_restart_under_two_processes_announces_no_leave(
    redis_server: RedisServer, tmp_path: Path, data: str
) -> None:
    """Worker two reaches Redis through a proxy that stays shut until
    worker one has beaten once after the restart: a worker that reaped at
    once (not after a whole expiry connected) would take two, whose claim
    in the kept data ran out during the outage, for dead."""
    env = {"CHAT_APP_PRESENCE_EXPIRY": str(RESTART_EXPIRY)}
    async with (
        AsyncExitStack() as stack,
        tcp_proxy(redis_server.port) as proxy,
        trio.open_nursery() as nursery,
    ):
        via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
        workers = []
        for url in (redis_server.url, via_proxy):
            worker = ServerProcess(
                "direct", tmp_path, env={**env, "TRIO_CABLE_REDIS_URL": url}
            )
            stack.callback(worker.stop)
            worker.start()
            workers.append(worker)
        one, two = workers
        for worker in workers:
            await worker.wait_ready()
        observers = []
        for worker in workers:
            observer = Observer(await raw_connect(stack, worker.port, welcome=True))
            await observer.client.subscribe(LOBBY)
            nursery.start_soon(observer.read)
            observers.append(observer)
        await member(stack, one, "ann")
        await member(stack, one, "bob")
        await member(stack, two, "cat")
        await wait_until(lambda: all(len(o.events) == 3 for o in observers))
        for observer in observers:
            assert await observer.members() == ["ann", "bob", "cat"]

        if data == "kept":  # the restarted Redis loads every claim
            with redis_server.client() as redis:
                redis.save()
        proxy.refuse()
        redis_server.kill()
        await until_stats(workers, lambda p: not p["connected"])
        # Away: a join is not lost (announced once Redis is back); each
        # worker lists its own.
        await member(stack, two, "dan")
        with trio.fail_after(LOSS_BOUND):
            while "dan" not in await observers[1].members():
                await trio.sleep(0.02)
        assert await observers[0].members() == ["ann", "bob"]
        assert await observers[1].members() == ["cat", "dan"]
        # An outage past the expiry: every claim Redis kept has run out.
        await trio.sleep(RESTART_EXPIRY * 1.25)
        redis_server.start()
        (back,) = await until_stats([one], lambda p: p["connected"])
        await until_stats([one], lambda p: p["beats"] > back["beats"])
        proxy.admit()  # two comes back a heartbeat or more after one
        await until_stats(workers, lambda p: p["connected"])
        # Past the time one waits before reaping (a whole expiry
        # connected), and two of its reaping beats more.
        reap_after = 4 + 2
        await until_stats([one], lambda p: p["beats"] >= back["beats"] + reap_after)
        everyone = ["ann", "bob", "cat", "dan"]
        for observer in observers:
            assert await observer.members() == everyone  # converged
            assert observer.saw("leave") == []
            assert sorted(observer.saw("join")) == everyone  # each once
        # Events flow as before: a join and a leave, each seen once.
        eve = await member(stack, one, "eve")
        await wait_until(lambda: all("eve" in o.saw("join") for o in observers))
        await eve.send_text(command("leave", LOBBY))
        await wait_until(lambda: all(o.saw("leave") == ["eve"] for o in observers))
        for observer in observers:
            assert await observer.members() == everyone
            assert sorted(observer.saw("join")) == sorted([*everyone, "eve"])
        nursery.cancel_scope.cancel()
