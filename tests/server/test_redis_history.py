"""Stream history kept in Redis, against a real redis-server per test.

Two cables on one Redis are two workers as Redis sees it (each has its
own bridge, connections and threads); a cable started again after another
stopped is a restarted worker. Clients speak the extended protocol on the
in-memory transport.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import (
    LOSS_BOUND,
    RedisServer,
    assert_nothing_left,
    load_doc,
    redis_killed,
    wait_until,
)
from trio_cable import Cable, Channel, HistoryPolicy, RedisCable
from trio_cable._redis_history import _STORE
from trio_cable.testing import TestClient, cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]
FEED = identifier_for("Feed", room="x")


def make_cable(url: str, **options: Any) -> Cable:
    options.setdefault("history", ["feed:*"])
    cable = RedisCable(url, **options)

    @cable.channel
    class Feed(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"feed:{self.params['room']}")

    @cable.channel
    class Typing(Channel):
        async def subscribed(self) -> None:
            self.stream_from("typing", whisper=True)
            self.stream_from("plain")

    return cable


@asynccontextmanager
async def client_of(cable: Cable) -> AsyncIterator[TestClient]:
    async with cable_test_client(cable, subprotocols=EXT) as client:
        yield client


async def subscribe(
    client: TestClient, history: dict[str, Any] | None = None, identifier: str = FEED
) -> None:
    frame: dict[str, Any] = {"command": "subscribe", "identifier": identifier}
    if history is not None:
        frame["history"] = history
    await client.send_raw(json.dumps(frame))
    with trio.fail_after(LOSS_BOUND):
        confirm = await client.receive()
    assert confirm["type"] == "confirm_subscription", confirm


async def frames_until_history_result(client: TestClient) -> list[dict[str, Any]]:
    """The replayed frames, then the confirm/reject_history frame last."""
    frames = []
    with trio.fail_after(LOSS_BOUND):
        while True:
            frame = await client.receive()
            frames.append(frame)
            if frame.get("type") in ("confirm_history", "reject_history"):
                return frames


async def recovered(client: TestClient, count: int) -> list[Any]:
    """The ``count`` messages a recovering client gets: those in Redis when
    its history was read replayed before the history result, any written
    there later (a busy broadcaster's) delivered live after it; each once."""
    frames = await frames_until_history_result(client)
    got = [f["message"] for f in frames if "message" in f]
    if len(got) < count:
        got += [f["message"] for f in await messages(client, count - len(got))]
    return got


async def messages(client: TestClient, count: int) -> list[dict[str, Any]]:
    got = []
    with trio.fail_after(LOSS_BOUND):
        while len(got) < count:
            frame = await client.receive()
            assert "message" in frame, frame
            got.append(frame)
    return got


async def nothing_more(client: TestClient, within: float = 0.3) -> None:
    # asserting an absence needs a window
    with trio.move_on_after(within):
        extra = await client.receive()
        pytest.fail(f"unexpected frame {extra}")


def stored_epoch(redis_server: RedisServer, stream: str) -> str | None:
    with redis_server.client() as client:
        raw = client.hget(f"trio_cable:history-meta:{stream}", "epoch")
    return None if raw is None else raw.decode()


def spot(epoch: str | None, offset: int) -> dict[str, Any]:
    return {"streams": {"feed:x": {"epoch": epoch, "offset": offset}}}


async def test_two_workers_hand_out_the_same_offsets_in_one_epoch(
    redis_server: RedisServer,
) -> None:
    """Broadcasts made on either worker reach the clients of both with the
    same positions, in the same order (Redis's: each worker's own in the
    order it made them): offsets 1..20 in Redis's epoch."""
    a, b = make_cable(redis_server.url), make_cable(redis_server.url)
    async with a.running(), b.running(), client_of(a) as ann, client_of(b) as bob:
        await subscribe(ann)
        await subscribe(bob)
        for n in range(20):
            await (a if n % 2 else b).broadcast("feed:x", {"n": n})
        got_ann, got_bob = await messages(ann, 20), await messages(bob, 20)
        epoch = stored_epoch(redis_server, "feed:x")
        assert epoch
        assert got_ann == got_bob
        for got in (got_ann, got_bob):
            numbers = [f["message"]["n"] for f in got]
            assert sorted(numbers) == list(range(20))
            assert [n for n in numbers if n % 2] == list(range(1, 20, 2))
            assert [n for n in numbers if not n % 2] == list(range(0, 20, 2))
            assert [(f["epoch"], f["offset"]) for f in got] == [
                (epoch, n) for n in range(1, 21)
            ]
            assert {f["stream_id"] for f in got} == {"feed:x"}
        # A stream without history: as before, no position and no key.
        await subscribe(ann, identifier=identifier_for("Typing"))
        await b.broadcast("plain", {"plain": 1})
        [plain] = await messages(ann, 1)
        assert plain["message"] == {"plain": 1}
        assert "offset" not in plain
        with redis_server.client() as client:
            assert not client.exists("trio_cable:history:plain")


async def test_history_survives_a_worker_restart_and_is_read_anywhere(
    redis_server: RedisServer,
) -> None:
    """A worker keeps history for streams nobody here subscribes to; after
    it stops, a fresh worker (a restart) replays from a position, then the
    other worker's live broadcasts follow with the next offsets."""
    a, b = make_cable(redis_server.url), make_cable(redis_server.url)
    async with b.running():
        async with a.running():
            for n in range(5):
                await a.broadcast("feed:x", {"n": n})
            await wait_until(lambda: a.bridge and not a.bridge.statistics().buffered)
        epoch = stored_epoch(redis_server, "feed:x")
        restarted = make_cable(redis_server.url)
        async with restarted.running(), client_of(restarted) as client:
            await subscribe(client, spot(epoch, 2))
            frames = await frames_until_history_result(client)
            assert [f.get("offset") for f in frames] == [3, 4, 5, None]
            assert [f["message"]["n"] for f in frames[:3]] == [2, 3, 4]
            assert frames[-1]["type"] == "confirm_history"
            await b.broadcast("feed:x", {"n": 5})
            [live] = await messages(client, 1)
            assert (live["epoch"], live["offset"], live["message"]) == (
                epoch,
                6,
                {"n": 5},
            )
            # Since a time: what was kept since then (all of it here).
            command = {"command": "history", "identifier": FEED}
            since = {"since": 1}
            await client.send_raw(json.dumps({**command, "history": since}))
            frames = await frames_until_history_result(client)
            assert [f.get("offset") for f in frames] == [1, 2, 3, 4, 5, 6, None]
            # Up to date: nothing to replay, confirmed.
            await client.send_raw(json.dumps({**command, "history": spot(epoch, 6)}))
            frames = await frames_until_history_result(client)
            assert [f["type"] for f in frames] == ["confirm_history"]


async def test_history_gone_or_epoch_changed_is_rejected(
    redis_server: RedisServer,
) -> None:
    """Beyond the limit, an unknown epoch, a position never handed out, and
    the epoch made anew after FLUSHALL: ``reject_history``, and live
    delivery goes on (in the new epoch, counting from 1)."""
    history = {"feed:*": HistoryPolicy(limit=3)}
    cable = make_cable(redis_server.url, history=history)
    command = {"command": "history", "identifier": FEED}
    async with cable.running(), client_of(cable) as client:
        await subscribe(client)
        for n in range(6):
            await cable.broadcast("feed:x", {"n": n})
        await messages(client, 6)
        epoch = stored_epoch(redis_server, "feed:x")
        for position in (spot(epoch, 1), spot("other", 5), spot(epoch, 7)):
            await client.send_raw(json.dumps({**command, "history": position}))
            [frame] = await frames_until_history_result(client)
            assert frame["type"] == "reject_history", position
        await client.send_raw(json.dumps({**command, "history": spot(epoch, 3)}))
        frames = await frames_until_history_result(client)
        assert [f.get("offset") for f in frames] == [4, 5, 6, None]
        with redis_server.client() as redis:
            redis.flushall()
        await client.send_raw(json.dumps({**command, "history": spot(epoch, 6)}))
        [frame] = await frames_until_history_result(client)
        assert frame["type"] == "reject_history"
        await cable.broadcast("feed:x", {"n": 6})
        [live] = await messages(client, 1)
        new_epoch = stored_epoch(redis_server, "feed:x")
        assert new_epoch not in (None, epoch)
        assert (live["epoch"], live["offset"]) == (new_epoch, 1)


async def test_the_hand_off_is_exactly_once_while_another_worker_broadcasts(
    redis_server: RedisServer,
) -> None:
    """Clients keep subscribing on worker A with a position while worker B
    broadcasts without pause: each gets every broadcast after its position
    exactly once, in order, whichever came from the replay and whichever
    live (and A's listener may hand it one the replay carried already)."""
    history = {"feed:*": HistoryPolicy(limit=1000)}
    a = make_cable(redis_server.url, history=history)
    b = make_cable(redis_server.url, history=history)
    total = 300
    async with a.running(), b.running(), client_of(a) as watcher:
        await subscribe(watcher)  # keeps feed:x subscribed on A throughout
        await b.broadcast("feed:x", {"n": 0})
        [first] = await messages(watcher, 1)
        epoch = first["epoch"]
        done = trio.Event()

        async def broadcaster() -> None:
            for n in range(1, total):
                await b.broadcast("feed:x", {"n": n})
            done.set()

        async def late_subscriber(start: int) -> None:
            async with client_of(a) as client:
                await subscribe(client, spot(epoch, start))
                offsets: list[int] = []
                with trio.fail_after(LOSS_BOUND):
                    while len(offsets) < total - start:
                        frame = await client.receive()
                        if "offset" in frame:
                            offsets.append(frame["offset"])
                assert offsets == list(range(start + 1, total + 1))

        def handed_out(offset: int) -> bool:
            return a.hub.statistics().broadcasts >= offset

        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster)
            for start in range(1, total // 2, 15):
                # Each waits until its position is handed out, then joins.
                await wait_until(partial(handed_out, start))
                nursery.start_soon(late_subscriber, start)
        assert done.is_set()


async def test_whispers_cross_workers_never_back_to_the_sender(
    redis_server: RedisServer,
) -> None:
    a, b = make_cable(redis_server.url), make_cable(redis_server.url)
    typing = identifier_for("Typing")
    async with (
        a.running(),
        b.running(),
        client_of(a) as ann,
        client_of(a) as amy,
        client_of(b) as bob,
    ):
        for client in (ann, amy, bob):
            await subscribe(client, identifier=typing)
        whisper = {"command": "whisper", "identifier": typing, "data": {"t": "ann"}}
        await ann.send_raw(json.dumps(whisper))
        for client in (amy, bob):
            [got] = await messages(client, 1)
            assert got["message"] == {"t": "ann"}
            assert "offset" not in got  # never stored
        # A broadcast made after it reaches ann first: her whisper never came.
        await b.broadcast("typing", {"marker": 1})
        for client in (ann, amy, bob):
            [got] = await messages(client, 1)
            assert got["message"] == {"marker": 1}
        await nothing_more(ann)
        with redis_server.client() as redis:
            assert not redis.keys("trio_cable:history*typing*")


async def test_while_redis_is_away_history_streams_wait_and_come_in_order(
    redis_server: RedisServer,
) -> None:
    """Redis killed: broadcasts to a history stream are delivered nowhere
    (not even here: they have no position yet), a plain stream's still are
    here, and history requests are refused. Redis back (empty: a new
    epoch): the waiting ones arrive in order, positioned from 1."""
    cable = make_cable(redis_server.url)
    command = {"command": "history", "identifier": FEED}
    async with cable.running(), client_of(cable) as client:
        await subscribe(client)
        await subscribe(client, identifier=identifier_for("Typing"))
        await cable.broadcast("feed:x", {"n": 0})
        [before] = await messages(client, 1)
        bridge = await redis_killed(redis_server, cable)
        for n in range(1, 4):
            await cable.broadcast("feed:x", {"n": n})
        await cable.broadcast("plain", {"plain": True})
        [plain] = await messages(client, 1)
        assert plain["message"] == {"plain": True}
        position = spot(before["epoch"], 1)
        await client.send_raw(json.dumps({**command, "history": position}))
        [refused] = await frames_until_history_result(client)
        assert refused["type"] == "reject_history"
        assert bridge.statistics().buffered == 4  # the plain one too, for Redis
        redis_server.start()
        got = await messages(client, 3)
        assert [f["message"]["n"] for f in got] == [1, 2, 3]
        assert [f["offset"] for f in got] == [1, 2, 3]
        assert got[0]["epoch"] != before["epoch"]
        await nothing_more(client)


@pytest.mark.parametrize("situation", ["normal", "redis_down"])
async def test_shutdown_is_prompt_and_leaves_nothing(
    redis_server: RedisServer, situation: str
) -> None:
    """With history broadcasts written, recoveries read and gaps filled
    (normal), or pending while Redis is away and the writer retries:
    shutdown takes milliseconds and leaves no thread, no connection."""
    cable = make_cable(redis_server.url)
    async with trio.open_nursery() as nursery:
        await nursery.start(cable.serve)
        async with client_of(cable) as client:
            await subscribe(client, {"since": 1})
            await frames_until_history_result(client)
            await cable.broadcast("feed:x", {"n": 0})
            await messages(client, 1)
        await wait_until(lambda: len(redis_server.bridge_connections()) >= 3)
        if situation == "redis_down":
            bridge = await redis_killed(redis_server, cable)
            for n in range(100):
                await cable.broadcast("feed:x", {"n": n})
            await wait_until(lambda: not bridge.writing)  # it tried, and retries
        start = time.monotonic()
        nursery.cancel_scope.cancel()
    elapsed = time.monotonic() - start
    # bound: milliseconds even on a loaded 2-core machine; under the
    # reader's 2 s and the writer's 5 s socket timeouts, which a shutdown
    # waiting on a stuck thread would take
    assert elapsed < 1.0
    assert_nothing_left(redis_server)


async def test_a_gap_this_worker_did_not_hear_is_read_from_redis(
    redis_server: RedisServer,
) -> None:
    """Broadcasts positioned in Redis whose PUBLISH this worker missed (its
    subscription was interrupted) are read back when the next one shows
    the gap, and delivered first, in order, each once."""
    a, b = make_cable(redis_server.url), make_cable(redis_server.url)
    async with a.running(), b.running(), client_of(a) as client:
        await subscribe(client)
        await b.broadcast("feed:x", {"n": 1})
        [first] = await messages(client, 1)
        # Two broadcasts positioned by the same script, published where no
        # one listens: what a worker misses while it resubscribes.
        keys = ["trio_cable:history:feed:x", "trio_cable:history-meta:feed:x"]
        with redis_server.client() as redis:
            store = redis.register_script(_STORE)
            for n in (2, 3):
                payload = json.dumps({"n": n})
                args = ["nowhere", payload, 100, 60_000, 60_000, "-", int(time.time())]
                store(keys=keys, args=args)
        await b.broadcast("feed:x", {"n": 4})
        got = await messages(client, 3)
        assert [f["message"]["n"] for f in got] == [2, 3, 4]
        assert [f["offset"] for f in got] == [2, 3, 4]
        assert {f["epoch"] for f in got} == {first["epoch"]}
        await nothing_more(client)
        bridge = a.bridge
        assert bridge is not None
        assert bridge.gaps == 0  # nothing was gone


async def test_the_reliability_doc_two_workers_example(
    redis_server: RedisServer,
) -> None:
    """docs/reliability.md's ``worker()``: a client of one worker recovers
    what was broadcast on another while it was away."""
    doc = load_doc("reliability.md")
    a, b = doc.worker(redis_server.url), doc.worker(redis_server.url)
    ident = json.dumps({"channel": "OrdersChannel", "shop": "s1"})
    async with a.running(), b.running():
        async with client_of(a) as first:
            await subscribe(first, identifier=ident)
            await b.broadcast("orders:s1", {"order": 1})
            [seen] = await messages(first, 1)
        await b.broadcast("orders:s1", {"order": 2})
        async with client_of(b) as again:
            position = {"epoch": seen["epoch"], "offset": seen["offset"]}
            await subscribe(again, {"streams": {"orders:s1": position}}, ident)
            assert await recovered(again, 1) == [{"order": 2}]
            await nothing_more(again)


async def test_past_the_buffer_the_oldest_waiting_are_dropped_and_counted(
    redis_server: RedisServer,
) -> None:
    cable = make_cable(redis_server.url, redis_buffer=3)
    async with cable.running(), client_of(cable) as client:
        await subscribe(client)
        bridge = await redis_killed(redis_server, cable)
        await cable.broadcast("feed:x", {"n": 0})
        await wait_until(lambda: not bridge.writing)  # it tried and put it back
        for n in range(1, 5):
            await cable.broadcast("feed:x", {"n": n})  # never waits: Redis is away
        stats = bridge.statistics()
        assert (stats.buffered, stats.dropped) == (3, 2)
        redis_server.start()
        got = await messages(client, 3)
        assert [f["message"]["n"] for f in got] == [2, 3, 4]
        await nothing_more(client)


async def test_a_session_resumed_on_its_worker_replays_from_redis(
    redis_server: RedisServer,
) -> None:
    """A dropped client back on its worker with its sid: restored, and its
    ``history`` command replays from Redis what the other worker broadcast
    meanwhile, then live delivery goes on, each once."""
    a, b = make_cable(redis_server.url), make_cable(redis_server.url)
    async with a.running(), b.running():
        async with client_of(a) as first:
            sid = first.welcome["sid"]
            await subscribe(first)
            await b.broadcast("feed:x", {"n": 0})
            [seen] = await messages(first, 1)
        for n in (1, 2):
            await b.broadcast("feed:x", {"n": n})
        async with cable_test_client(a, subprotocols=EXT, query={"sid": sid}) as again:
            assert again.welcome["restored_ids"] == [FEED]
            position = {"epoch": seen["epoch"], "offset": seen["offset"]}
            command = {"command": "history", "identifier": FEED}
            history = {"streams": {"feed:x": position}}
            await again.send_raw(json.dumps({**command, "history": history}))
            assert await recovered(again, 2) == [{"n": 1}, {"n": 2}]
            await b.broadcast("feed:x", {"n": 3})
            [live] = await messages(again, 1)
            assert (live["message"], live["offset"]) == ({"n": 3}, 4)
            await nothing_more(again)
