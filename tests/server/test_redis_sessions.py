"""Sessions kept in a real Redis: a client comes back to another worker.

Two cables in one process, built by the same code and sharing one real
``redis-server``, stand for two workers (``two_workers``); the
multi-process version, with AnyCable's own client, is
``tests/interop/test_anycable_redis_sessions.py``. A session dropped on one is
restored by the other: identity, every subscription (streams, whisper
stream, ``stream_from`` callbacks, timers, ``session_state``, a
``$pubsub`` stream), no connect hook, no ``subscribed()``; it is taken
once; an unrestored one's ``unsubscribed()`` runs once, on whichever
worker claims it, also when the worker it dropped from is gone; Redis
away or a session that cannot cross: it stays in memory, logged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, RedisServer, free_port, wait_until
from trio_cable import Cable, Channel, current, rescue_from
from trio_cable._redis_sessions import RedisSessionStore
from trio_cable._sessions import MemorySessionStore
from trio_cable.testing import TestClient, cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]
ROOM = identifier_for("Room", room="r1")
SECRET = "a secret for signed streams"


@dataclass
class User:
    """An identity JSON cannot carry."""

    name: str


def worker(
    name: str, calls: Counter[str], url: str, **options: Any
) -> tuple[Cable, Counter[str]]:
    """One worker's cable: the same code on each, counting per worker."""

    async def connect(request: Any) -> Any:
        calls[f"{name} connect"] += 1
        user = request.query.get("user", "anon")
        return User(user) if request.query.get("object") else {"user": user}

    cable = Cable(connect=connect, redis_url=url, streams_secret=SECRET, **options)

    @cable.channel
    class Room(Channel):
        session_state = ("said", "room")

        async def subscribed(self) -> None:
            calls[f"{name} subscribed"] += 1
            self.said: list[str] = []
            self.room = self.params["room"]
            self.scratch = "not listed"  # in no session_state: not carried
            self.stream_from(f"room:{self.room}", whisper=True)
            self.stream_from(f"shout:{self.room}", self.loud)
            if self.request.query.get("lambda"):
                self.stream_from("odd", lambda data: data)
            self.periodically(self.tick, 0.05)

        def loud(self, data: Any) -> Any:
            return {"loud": data}

        async def tick(self) -> None:
            calls[f"{name} tick"] += 1

        async def unsubscribed(self) -> None:
            calls[f"{name} unsubscribed"] += 1
            calls[f"{name} unsubscribed by {self.current_user}"] += 1
            calls[f"{name} current.user {current.user}"] += 1
            if self.room == "boom":
                raise LookupError(self.said)

        @rescue_from(LookupError)
        def rescued(self, exc: LookupError) -> None:
            calls[f"{name} rescued {exc}"] += 1

        def say(self, data: dict[str, Any]) -> dict[str, Any]:
            self.said.append(data["text"])
            return {
                "said": self.said,
                "room": self.room,
                "scratch": getattr(self, "scratch", None),
                "user": str(self.current_user),
            }

    return cable, calls


@asynccontextmanager
async def two_workers(
    url: str, **options: Any
) -> AsyncIterator[tuple[Cable, Cable, Counter[str]]]:
    calls: Counter[str] = Counter()
    a, _ = worker("a", calls, url, **options)
    b, _ = worker("b", calls, url, **options)
    async with a.running(), b.running():
        yield a, b, calls


async def drop(client: TestClient) -> None:
    """Cut the client's socket; wait until its worker has let go."""
    conn = client.connection
    await client.close()
    while conn in conn.cable.connections:  # type: ignore[attr-defined]
        await trio.testing.wait_all_tasks_blocked()


async def keep_one(cable: Cable, **query: str) -> tuple[str, str]:
    """Connect, subscribe to Room r1 and a signed $pubsub stream, say
    "a", drop; the old sid and the $pubsub identifier."""
    pubsub = json.dumps(
        {"channel": "$pubsub", "signed_stream_name": cable.signed_stream_name("news")}
    )
    async with cable_test_client(cable, subprotocols=EXT, query=query) as first:
        await first.subscribe("Room", room="r1")
        await first.send_command("subscribe", pubsub)
        assert (await first.receive())["type"] == "confirm_subscription"
        reply = await first.call("Room", "say", {"text": "a"}, room="r1")
        assert reply["result"]["said"] == ["a"]
        sid: str = first.welcome["sid"]
        await drop(first)
    return sid, pubsub


async def ask_history(client: TestClient, identifier: str) -> None:
    """What @anycable/web sends after a restore; releases live delivery."""
    history = {"command": "history", "identifier": identifier, "history": {}}
    await client.send_raw(json.dumps(history))
    assert (await client.receive())["type"] == "confirm_history"


def session_keys(redis_server: RedisServer) -> list[bytes]:
    with redis_server.client() as client:
        return list(client.scan_iter("trio_cable:session:*"))


async def test_a_session_kept_by_one_worker_is_restored_by_the_other(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with two_workers(redis_server.url) as (a, b, calls):
        sid, pubsub = await keep_one(a, user="ann")
        [warned] = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
        assert warned == (
            "Room: attributes scratch are not in session_state: a session "
            "restored from Redis starts without them"
        )
        assert len(session_keys(redis_server)) == 1
        assert len(a.sessions.store) == 0  # in Redis, not in a's memory
        tick = calls["a tick"]

        async with cable_test_client(b, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome["restored"] is True
            assert c.welcome["restored_ids"] == [ROOM, pubsub]
            assert c.welcome["sid"] != sid
            # Identity and declared state back; no hook ran on b.
            assert c.connection.identity == {"user": "ann"}
            reply = await c.call("Room", "say", {"text": "b"}, room="r1")
            assert reply["result"] == {
                "said": ["a", "b"],
                "room": "r1",
                "scratch": None,  # not in session_state
                "user": "{'user': 'ann'}",
            }
            assert calls["b connect"] == calls["b subscribed"] == 0
            assert calls["a connect"] == calls["a subscribed"] == 1
            assert session_keys(redis_server) == []
            for identifier in (ROOM, pubsub):
                await ask_history(c, identifier)
            # Every stream live on b, broadcasts from either worker.
            await a.broadcast("room:r1", {"n": 1})
            assert (await c.receive())["message"] == {"n": 1}
            await b.broadcast("shout:r1", {"n": 2})  # through its callback
            assert (await c.receive())["message"] == {"loud": {"n": 2}}
            await a.broadcast("news", {"n": 3})
            frame = await c.receive()
            assert (frame["identifier"], frame["message"]) == (pubsub, {"n": 3})
            # The whisper stream too: another client of b hears it.
            async with cable_test_client(b, subprotocols=EXT) as other:
                await other.subscribe("Room", room="r1")
                whisper = {"command": "whisper", "identifier": ROOM, "data": {"w": 1}}
                await c.send_raw(json.dumps(whisper))
                assert (await other.receive())["message"] == {"w": 1}
            # Its timer runs again, on b.
            await wait_until(lambda: calls["b tick"] >= 2)
            assert calls["a tick"] == tick  # stopped at the drop
        assert calls["a unsubscribed"] == calls["b unsubscribed"] == 0


async def test_a_session_is_taken_once(redis_server: RedisServer) -> None:
    async with two_workers(redis_server.url) as (a, b, calls):
        sid, _ = await keep_one(a)
        welcomes: list[dict[str, Any]] = []

        async def back(cable: Cable) -> None:
            async with cable_test_client(
                cable, subprotocols=EXT, query={"sid": sid}
            ) as client:
                welcomes.append(client.welcome)

        async with trio.open_nursery() as nursery:  # at once, on both
            nursery.start_soon(back, a)
            nursery.start_soon(back, b)
        assert sorted(w.get("restored", False) for w in welcomes) == [False, True]
        assert calls["a connect"] + calls["b connect"] == 2  # the fresh one


async def test_many_clients_back_at_once_are_all_restored(
    redis_server: RedisServer,
) -> None:
    """A worker's clients all back at once on the other (its Redis calls
    wait their turn): every one restored, none twice."""
    async with two_workers(redis_server.url) as (a, b, calls):
        sids = [(await keep_one(a, user=f"u{i}"))[0] for i in range(40)]
        restored: list[Any] = []

        async def back(sid: str) -> None:
            async with cable_test_client(
                b, subprotocols=EXT, query={"sid": sid}
            ) as client:
                restored.append(client.connection.identity)

        with trio.fail_after(LOSS_BOUND):
            async with trio.open_nursery() as nursery:
                for sid in sids:
                    nursery.start_soon(back, sid)
        assert sorted(r["user"] for r in restored) == sorted(f"u{i}" for i in range(40))
        assert calls["b connect"] == calls["b subscribed"] == 0


async def test_an_unrestored_session_ends_once_among_workers(
    redis_server: RedisServer,
) -> None:
    async with two_workers(redis_server.url, session_ttl=0.3) as (a, b, calls):
        sid, _ = await keep_one(a, user="ann")

        def ended() -> int:
            return calls["a unsubscribed"] + calls["b unsubscribed"]

        await wait_until(lambda: ended() == 1)
        # One per subscription (Room); either worker may have claimed it,
        # on a channel rebuilt with its identity.
        assert (
            calls["a unsubscribed by {'user': 'ann'}"]
            + calls["b unsubscribed by {'user': 'ann'}"]
            == 1
        )
        # Claimed means gone from Redis: no worker can claim it again.
        assert session_keys(redis_server) == []
        with redis_server.client() as client:
            assert client.zcard("trio_cable:sessions") == 0
        # Back after the TTL: a fresh session, on either worker.
        async with cable_test_client(b, subprotocols=EXT, query={"sid": sid}) as c:
            assert "restored" not in c.welcome


async def test_the_session_of_a_worker_that_is_gone_ends_on_another(
    redis_server: RedisServer,
) -> None:
    calls: Counter[str] = Counter()
    a, _ = worker("a", calls, redis_server.url, session_ttl=1.0)
    b, _ = worker("b", calls, redis_server.url, session_ttl=1.0)
    async with b.running():
        async with a.running():
            await keep_one(a)
        # a stopped before the expiry: its session stays in Redis (a
        # durable store is not emptied at a stop) and b claims it.
        assert calls["a unsubscribed"] == 0
        assert len(session_keys(redis_server)) == 1
        await wait_until(lambda: calls["b unsubscribed"] == 1)
        # On a channel rebuilt with the identity and state, current.user
        # set, and its rescue_from handlers in force.
        assert calls["b current.user {'user': 'anon'}"] == 1
        async with cable_test_client(b, subprotocols=EXT) as client:
            await client.subscribe("Room", room="boom")
            await client.call("Room", "say", {"text": "x"}, room="boom")
            await drop(client)
        await wait_until(lambda: calls["b rescued ['x']"] == 1)
    assert calls["a unsubscribed"] == 0
    assert session_keys(redis_server) == []


async def test_a_worker_restarted_while_the_client_was_away_restores_it(
    redis_server: RedisServer,
) -> None:
    calls: Counter[str] = Counter()
    old, _ = worker("old", calls, redis_server.url)
    async with old.running():
        sid, _ = await keep_one(old, user="ann")
    assert calls["old unsubscribed"] == 0  # still the client's, in Redis
    new, _ = worker("new", calls, redis_server.url)
    async with new.running():
        await trio.testing.wait_all_tasks_blocked()  # its keeper is up
        async with cable_test_client(new, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome["restored"] is True
            reply = await c.call("Room", "say", {"text": "b"}, room="r1")
            assert reply["result"]["said"] == ["a", "b"]
            assert calls["new connect"] == calls["new subscribed"] == 0
    # Nothing of either worker is left in Redis's client list.
    await wait_until(lambda: redis_server.bridge_connections() == [])


async def test_a_client_told_server_restart_leaves_no_session(
    redis_server: RedisServer,
) -> None:
    """The disconnect frame makes @anycable/core forget its sid (as at
    AnyCable's own restarts): nothing is kept for it, and its
    ``unsubscribed()`` runs at the stop, as without Redis."""
    calls: Counter[str] = Counter()
    old, _ = worker("old", calls, redis_server.url)
    async with old.running(), cable_test_client(old, subprotocols=EXT) as client:
        await client.subscribe("Room", room="r1")
        await old.shutdown()  # what SIGTERM does
        assert await client.receive() == {
            "type": "disconnect",
            "reason": "server_restart",
            "reconnect": True,
        }
    assert calls["old unsubscribed"] == 1
    assert session_keys(redis_server) == []


async def test_redis_away_keeps_sessions_in_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "trio_cable.sessions")
    calls: Counter[str] = Counter()
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cable, _ = worker("a", calls, nowhere)
    async with cable.running():
        sid, _ = await keep_one(cable, user="ann")
        assert len(cable.sessions.store) == 1  # in this process instead
        with trio.fail_after(LOSS_BOUND):
            async with cable_test_client(
                cable, subprotocols=EXT, query={"sid": sid}
            ) as c:
                assert c.welcome["restored"] is True
                reply = await c.call("Room", "say", {"text": "b"}, room="r1")
                assert reply["result"]["scratch"] == "not listed"  # the instance
    away = [r for r in caplog.records if "redis unreachable for sessions" in r.message]
    assert len(away) == 1
    # Kept in memory, it ended with the cable (as without Redis).
    assert calls["a unsubscribed"] == 1


async def test_redis_killed_and_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Sessions go to memory while Redis is away, to Redis again once it is
    back; a restore that cannot reach Redis gets a fresh session, and
    nothing else is lost."""
    caplog.set_level(logging.INFO, "trio_cable.sessions")
    async with two_workers(redis_server.url) as (a, b, calls):
        in_redis, _ = await keep_one(a, user="ann")
        redis_server.kill()
        in_memory, _ = await keep_one(a, user="bob")
        assert len(a.sessions.store) == 1
        with trio.fail_after(LOSS_BOUND):
            async with cable_test_client(
                b, subprotocols=EXT, query={"sid": in_redis}
            ) as c:
                assert "restored" not in c.welcome  # Redis away: a fresh one
                await c.subscribe("Room", room="r2")  # and it works
        redis_server.start()  # empty: what it held is gone
        async with cable_test_client(
            a, subprotocols=EXT, query={"sid": in_memory}
        ) as c:
            assert c.welcome["restored"] is True  # from a's memory
            await drop(c)
        # Back: this drop's session went to Redis again.
        assert len(a.sessions.store) == 0
        assert len(session_keys(redis_server)) == 1
        assert calls["a connect"] == 2
    lines = [
        r.message.split(" (")[0]
        for r in caplog.records
        if r.name == "trio_cable.sessions" and r.message.startswith("redis")
    ]
    # One line per worker as Redis went, one as it came back (only a has
    # used it since: b's next look is due a session_ttl later).
    assert lines == [
        "redis unreachable for sessions",
        "redis unreachable for sessions",
        "redis reachable again: sessions go to Redis",
    ]


def in_redis_eval() -> bool:
    """Whether a thread is inside redis-py's ``eval`` now (the store's
    calls; the bridge's threads never call it)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        while frame is not None:
            code = frame.f_code
            if f"{os.sep}redis{os.sep}" in code.co_filename and code.co_name == "eval":
                return True
            frame = frame.f_back
    return False


async def test_a_hung_redis_holds_a_call_boundedly() -> None:
    """A Redis that accepts connections and never answers (a listener in
    the test that reads nothing: a hung server, without a bridge of a
    cable hanging on it too): a take gives up after the 2 s socket
    timeout (the client then gets a fresh session); a cancelled take
    waits for its outcome within that bound, so a session it took is not
    lost, and leaves no thread in redis-py."""
    host = Cable(session_ttl=300)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, hang, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        store = RedisSessionStore(
            f"redis://127.0.0.1:{port}/0", host, MemorySessionStore(10)
        )
        start = trio.current_time()
        assert await store.take("some-sid", start) is None
        assert 2.0 <= trio.current_time() - start < 2.0 + 1.0

        taking = trio.CancelScope()

        async def take() -> None:
            with taking:
                await store.take("some-sid", trio.current_time())

        async with trio.open_nursery() as inner:
            inner.start_soon(take)
            await wait_until(in_redis_eval)  # waiting on Redis, in a thread
            start = trio.current_time()
            taking.cancel()
        assert trio.current_time() - start < 2.0 + 1.0  # the timeout bounds it
        assert not in_redis_eval()
        store.close()
        nursery.cancel_scope.cancel()


async def hang(stream: trio.SocketStream) -> None:
    """A server that takes a connection and never answers."""
    async with stream:
        await trio.sleep_forever()


async def test_what_cannot_be_read_back_is_refused_clearly(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A session in Redis that is not ours (or from other code: a channel
    not registered here) gives a fresh session or leaves that
    subscription out, with a log line; the client's connection and the
    rest of the session carry on."""
    caplog.set_level(logging.WARNING, "trio_cable.sessions")
    async with two_workers(redis_server.url) as (a, b, calls):
        sid, pubsub = await keep_one(a, user="ann")
        with redis_server.client() as client:
            key = f"trio_cable:session:{sid}"
            session = json.loads(client.get(key))
            session["subscriptions"][0]["channel"] = "Gone"  # a deploy renamed it
            client.set(key, json.dumps(session), keepttl=True)
            client.set("trio_cable:session:junk", "not json", ex=60)
            client.zadd("trio_cable:sessions", {"junk": 2e12})
        async with cable_test_client(b, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome["restored_ids"] == [pubsub]  # Room left out
            assert calls["b subscribed"] == 0
        async with cable_test_client(b, subprotocols=EXT, query={"sid": "junk"}) as c:
            assert "restored" not in c.welcome
        messages = [r.message for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("cannot be restored here (no channel 'Gone'" in m for m in messages)
        assert any("a session in Redis cannot be read" in m for m in messages)


async def test_a_session_that_cannot_cross_stays_in_memory(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "trio_cable.sessions")
    async with two_workers(redis_server.url) as (a, b, _):
        by_object, _ = await keep_one(a, user="ann", object="1")
        by_lambda, _ = await keep_one(a, user="bob", **{"lambda": "1"})
        await keep_one(a, user="cy", object="1")  # the same cause again
        assert session_keys(redis_server) == []
        assert len(a.sessions.store) == 3
        errors = [r.message for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2  # once per cause
        assert "the identity (a User) is not JSON-encodable" in errors[0]
        assert "the stream_from callback" in errors[1]
        assert "<lambda> is not a method of the channel" in errors[1]
        # Only the worker it dropped from restores it; elsewhere: fresh.
        async with cable_test_client(
            b, subprotocols=EXT, query={"sid": by_object}
        ) as c:
            assert "restored" not in c.welcome
        for sid in (by_object, by_lambda):
            async with cable_test_client(a, subprotocols=EXT, query={"sid": sid}) as c:
                assert c.welcome["restored"] is True
