"""The Redis bridge against a real redis-server started per test."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import (
    LOSS_BOUND,
    RedisServer,
    assert_nothing_left,
    redis_killed,
    redis_threads,
    wait_until,
)
from trio_cable import Cable, CableError, Channel, RedisCable, redis_broadcast
from trio_cable.testing import TestClient, cable_test_client, identifier_for


def make_cable(url: str, **options: Any) -> Cable:
    cable = RedisCable(url, **options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}")

    return cable


async def subscribe(ws: TestClient, room: str) -> None:
    reply = await ws.subscribe("Room", room=room)
    assert reply["type"] == "confirm_subscription"


async def next_message(ws: TestClient, timeout: float = LOSS_BOUND) -> Any:
    with trio.fail_after(timeout):
        return (await ws.receive())["message"]


async def nothing_more(ws: TestClient, within: float = 0.3) -> None:
    # asserting an absence needs a window
    with trio.move_on_after(within):
        extra = await ws.receive()
        pytest.fail(f"unexpected frame {extra}")


@asynccontextmanager
async def two_processes(url: str) -> AsyncIterator[tuple[Cable, Cable]]:
    """Two cables with their own bridges: two processes, as Redis sees it."""
    a, b = make_cable(url), make_cable(url)
    async with a.running(), b.running():
        yield a, b


@asynccontextmanager
async def in_an_outage(
    redis_server: RedisServer, a: Cable, b: Cable
) -> AsyncIterator[TestClient]:
    """``a`` and ``b`` running, a client of each subscribed to ``room:r``,
    one broadcast received by both; then Redis killed and ``a`` knowing it.
    Yields ``b``'s client. (The broadcast before: after the outage the
    bridge waits, 5 s at most, for as many processes to be back as
    received it.)"""
    async with (
        a.running(),
        b.running(),
        cable_test_client(a) as wa,
        cable_test_client(b) as wb,
    ):
        await subscribe(wa, "r")
        await subscribe(wb, "r")
        await a.broadcast("room:r", {"n": -1})
        assert await next_message(wa) == await next_message(wb) == {"n": -1}
        await redis_killed(redis_server, a)
        yield wb


async def test_broadcasts_reach_every_subscriber_exactly_once(
    redis_server: RedisServer,
) -> None:
    async with (
        two_processes(redis_server.url) as (a, b),
        cable_test_client(a) as a1,
        cable_test_client(a) as a2,
        cable_test_client(b) as b1,
    ):
        for ws in (a1, a2, b1):
            await subscribe(ws, "x")
        await a.broadcast("room:x", {"from": "a"})
        await b.broadcast("room:x", {"from": "b"})
        for ws in (a1, a2, b1):
            got = [await next_message(ws), await next_message(ws)]
            assert sorted(m["from"] for m in got) == ["a", "b"]
        # a separate plain Python process (a script, a job)
        script = (
            "import sys; from trio_cable import redis_broadcast; "
            "print(redis_broadcast(sys.argv[1], 'room:x', {'from': 'script'}))"
        )
        out = await trio.run_process(
            [sys.executable, "-c", script, redis_server.url], capture_stdout=True
        )
        assert out.stdout.strip() == b"2"  # one bridge per process
        for ws in (a1, a2, b1):
            assert await next_message(ws) == {"from": "script"}
        for ws in (a1, a2, b1):
            await nothing_more(ws)
        assert a.stats()["redis"]["connected"] is True


async def test_subscribe_on_demand(redis_server: RedisServer) -> None:
    """Streams are subscribed while someone here listens; the cable's own
    remote-disconnect channel while it runs."""
    cable = make_cable(redis_server.url)
    control = "trio_cable:_trio_cable:disconnect"
    async with cable.running():
        assert redis_server.channels() == {control}
        async with cable_test_client(cable) as one, cable_test_client(cable) as two:
            await subscribe(one, "d")
            assert redis_server.channels() == {control, "trio_cable:room:d"}
            await subscribe(two, "d")
            await one.unsubscribe("Room", room="d")
            await trio.testing.wait_all_tasks_blocked()
            assert redis_server.channels() == {control, "trio_cable:room:d"}
            await two.unsubscribe("Room", room="d")
            await wait_until(lambda: redis_server.channels() == {control})
    await wait_until(lambda: not redis_server.channels())


async def test_confirmation_means_live_across_processes(
    redis_server: RedisServer,
) -> None:
    async with two_processes(redis_server.url) as (a, b), cable_test_client(a) as ws:
        for n in range(100):
            await subscribe(ws, f"live{n}")
            # the moment the client sees the confirmation, another process
            # broadcasts: it must arrive, every time
            await b.broadcast(f"room:live{n}", {"n": n})
            assert await next_message(ws) == {"n": n}


async def test_redis_killed_and_restarted_mid_stream(
    redis_server: RedisServer,
) -> None:
    async with (
        two_processes(redis_server.url) as (a, b),
        cable_test_client(a) as wa,
        cable_test_client(b) as wb,
    ):
        await subscribe(wa, "k")
        await subscribe(wb, "k")
        await a.broadcast("room:k", {"n": 0})
        assert await next_message(wa) == await next_message(wb) == {"n": 0}

        redis_server.kill()
        # local delivery carries on while Redis is away
        await a.broadcast("room:k", {"n": 1})
        assert await next_message(wa) == {"n": 1}
        await wait_until(lambda: not a.stats()["redis"]["connected"])
        await a.broadcast("room:k", {"n": 2})
        assert await next_message(wa) == {"n": 2}
        assert a.stats()["redis"]["buffered"] >= 1

        redis_server.start()
        # made during the outage: published after the reconnect
        assert await next_message(wb) == {"n": 1}
        assert await next_message(wb) == {"n": 2}
        for cable in (a, b):
            await wait_until(
                lambda cable=cable: (
                    cable.stats()["redis"]["connected"]
                    and cable.stats()["redis"]["channels"] == 2  # room:k, control
                )
            )
            assert cable.stats()["redis"]["reconnects"] == 1
        await b.broadcast("room:k", {"n": 3})
        assert await next_message(wa) == await next_message(wb) == {"n": 3}
        await nothing_more(wa)
        await nothing_more(wb)
        assert redis_server.channels() == {
            "trio_cable:room:k",
            "trio_cable:_trio_cable:disconnect",
        }


async def test_buffer_bound_drops_oldest_and_counts(redis_server: RedisServer) -> None:
    cable = make_cable(redis_server.url, redis_buffer=3)
    async with cable.running():
        await redis_killed(redis_server, cable)
        for n in range(5):
            await cable.broadcast("room:z", {"n": n})
        stats = cable.stats()["redis"]
        assert stats["dropped"] == 2
        assert stats["buffered"] == 3


async def shutdown_time(cable: Cable, prepare: Any = None) -> float:
    async with trio.open_nursery() as nursery:
        await nursery.start(cable.serve)
        if prepare is not None:
            await prepare()
        start = time.monotonic()
        nursery.cancel_scope.cancel()
    return time.monotonic() - start


@pytest.mark.parametrize("situation", ["normal", "redis_down", "pending_buffer"])
async def test_shutdown_is_prompt_and_leaves_nothing(
    redis_server: RedisServer, situation: str
) -> None:
    cable = make_cable(redis_server.url)

    async def prepare() -> None:
        async with cable_test_client(cable) as ws:
            await subscribe(ws, "s")
        await wait_until(redis_server.bridge_connections)
        if situation != "normal":
            await redis_killed(redis_server, cable)
            # let it go into backoff and retry at least once
            await trio.sleep(0.3)
        if situation == "pending_buffer":
            for n in range(100):
                await cable.broadcast("room:s", {"n": n})
            assert cable.stats()["redis"]["buffered"] == 100
            redis_server.start()
            await cable.broadcast("room:s", {"n": "last"})

    elapsed = await shutdown_time(cable, prepare)
    # bound: it takes milliseconds, even on a loaded 2-core machine; kept
    # under the subscriber socket's 1 s timeout, which a shutdown that
    # waited for its thread to time out would take
    assert elapsed < 1.0
    assert not cable.is_running
    assert_nothing_left(redis_server)


async def test_shutdown_during_a_long_backoff(
    redis_server: RedisServer, thread_safe_clock: trio.testing.MockClock
) -> None:
    cable = make_cable(redis_server.url)
    redis_server.kill()

    async def prepare() -> None:
        # many failed attempts: the backoff has grown to its cap
        await trio.sleep(20)
        assert cable.stats()["redis"]["connected"] is False

    start = trio.current_time()
    await shutdown_time(cable, prepare)
    assert trio.current_time() - start == pytest.approx(20, abs=0.1)
    assert redis_threads() == []


@pytest.fixture
def thread_safe_clock() -> trio.testing.MockClock:
    # Jump only after real idleness: the bridge waits on worker threads,
    # which a zero-threshold autojump clock would skip past.
    return trio.testing.MockClock(autojump_threshold=0.02)


async def test_backoff_is_capped_exponential(
    redis_server: RedisServer,
    thread_safe_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait between one failed attempt's end and the next attempt (in
    the clock's virtual time, which only the bridge's sleeps move: the
    test waits on an event, not on a deadline a thread's real time could
    jump to)."""
    import trio_cable._redis as bridge_module

    attempts: list[float] = []
    ended: list[float] = []
    enough = trio.Event()
    session = bridge_module.RedisBridge._session

    async def timed_session(self: Any, *args: Any) -> None:
        attempts.append(trio.current_time())
        if len(attempts) >= 30:
            enough.set()
        try:
            await session(self, *args)
        finally:
            ended.append(trio.current_time())

    monkeypatch.setattr(bridge_module.RedisBridge, "_session", timed_session)
    redis_server.kill()
    cable = make_cable(redis_server.url)
    async with cable.running():
        await enough.wait()
    waits = [b - a for a, b in zip(ended, attempts[1:], strict=False)]
    assert waits[0] < 0.2
    # Capped at 1 s: Redis is probed at least once a second while it is
    # away, however long that is.
    assert all(w <= 1.0 + 1e-6 for w in waits), max(waits)
    assert max(waits) > 0.5  # it did grow to the cap (with jitter)


async def test_delivery_resumes_soon_after_a_long_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Down 5 s (a 30 s cap had grown the wait to 3-6 s by then), under a
    storm that overflows the buffer: cross-process delivery is back within
    about a second of Redis, and what was dropped is counted and logged
    once."""
    a, b = make_cable(redis_server.url, redis_buffer=100), make_cable(redis_server.url)
    async with in_an_outage(redis_server, a, b) as wb:
        down = trio.current_time()
        n = 0
        while trio.current_time() - down < 5.0:  # 200 broadcasts a second
            a.broadcast_nowait("room:r", {"n": n})
            n += 1
            await trio.sleep(0.005)
        redis_server.start()
        back = trio.current_time()
        await wait_until(lambda: a.stats()["redis"]["connected"])
        resumed = trio.current_time() - back
        # What was buffered arrives; the dropped are counted.
        stats = a.stats()["redis"]
        assert stats["dropped"] == n - 100
        got = [(await next_message(wb))["n"] for _ in range(100)]
        assert got == list(range(n - 100, n))
    print(f"{n} broadcasts in a 5 s outage; bridge back {resumed:.2f} s after Redis")
    assert resumed < 2.0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping the oldest" in m for m in messages) == 1
    assert f"redis was away: {n - 100} broadcasts dropped (buffer of 100)" in messages


@pytest.mark.soak
async def test_a_20_s_outage_under_a_2000_per_second_storm(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's case, with the default buffer (10,000 broadcasts per
    process): Redis down 20 s while one process broadcasts 2,000 a
    second. The newest 10,000 arrive, in order; the rest (30,000) are
    counted and logged once; the bridge is back within a second of Redis
    and delivery within two. The broadcasting process's own subscriber is
    cut (too slow) during the outage, so the bridge must not wait for the
    subscriber count it had before, itself included (it waited its whole
    ``rejoin_timeout``, 5.4 s, so). The figures are in docs/security.md."""
    a = make_cable(redis_server.url)
    buffer = a.options.redis_buffer
    # The buffer comes back in one burst: 10,000 frames for a client whose
    # outbox holds 1,024 by default (one that reads them as fast as they
    # come keeps up; this in-process one may not, and be cut as too_slow).
    b = make_cable(redis_server.url, max_outbox_frames=2 * buffer)
    async with in_an_outage(redis_server, a, b) as wb:
        down = trio.current_time()
        n = 0
        while (elapsed := trio.current_time() - down) < 20.0:
            while n < elapsed * 2000:  # on schedule, 2,000 a second
                a.broadcast_nowait("room:r", {"n": n})
                n += 1
            await trio.sleep(0.01)
        redis_server.start()
        back = trio.current_time()
        await wait_until(lambda: a.stats()["redis"]["connected"], timeout=10)
        bridge_back = trio.current_time() - back
        got: list[int] = []
        with trio.fail_after(10 + LOSS_BOUND):
            while len(got) < buffer:
                frame = await wb.receive()
                if frame.get("type") == "ping":
                    continue
                assert "message" in frame, frame
                if not got:
                    delivered = trio.current_time() - back
                got.append(frame["message"]["n"])
        assert got == list(range(n - buffer, n))
        assert a.stats()["redis"]["dropped"] == n - buffer
    print(
        f"{n} broadcasts in a 20 s outage: bridge back {bridge_back:.2f} s and "
        f"first delivery {delivered:.2f} s after Redis; {buffer} delivered in "
        f"order, {n - buffer} dropped"
    )
    assert bridge_back < 2.0
    # bound: the goal (0.65 s measured on a loaded machine)
    assert delivered < 2.0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("dropping the oldest" in m for m in messages) == 1
    assert (
        f"redis was away: {n - buffer} broadcasts dropped (buffer of {buffer})"
        in messages
    )


def test_missing_redis_package_is_a_clear_startup_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    cable = Cable(redis_url="redis://127.0.0.1:1/0")

    async def main() -> None:
        async with cable.running():
            pass  # pragma: no cover

    with pytest.raises(CableError, match=r"pip install 'trio-cable\[redis\]'"):
        trio.run(main)


async def test_environment_variable_selects_redis(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIO_CABLE_REDIS_URL", redis_server.url)
    cable = Cable()

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("env")

    async with cable.running(), cable_test_client(cable) as ws:
        await ws.subscribe("Room")
        delivered = await trio.to_thread.run_sync(
            redis_broadcast, redis_server.url, "env", {"via": "redis"}
        )
        assert delivered == 1
        assert await next_message(ws) == {"via": "redis"}
        assert cable.stats()["redis"]["received"] == 1


async def test_url_forms_and_prefix(redis_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/3"
    cable = make_cable(url, prefix="app1:")
    async with cable.running(), cable_test_client(cable) as ws:
        await subscribe(ws, "p")
        assert redis_server.channels() == {"app1:room:p", "app1:_trio_cable:disconnect"}
        # another app on the same Redis, other prefix: not delivered
        await trio.to_thread.run_sync(
            lambda: redis_broadcast(url, "room:p", {"app": 2}, prefix="app2:")
        )
        await trio.to_thread.run_sync(
            lambda: redis_broadcast(url, "room:p", {"app": 1}, prefix="app1:")
        )
        assert await next_message(ws) == {"app": 1}
        raw = redis_server.client()
        raw.publish("app1:room:p", b"not json")
        raw.close()
        await nothing_more(ws)
    ident = identifier_for("Room", room="p")
    assert json.loads(ident)["room"] == "p"


@pytest.mark.slow
async def test_two_hypercorn_processes_share_broadcasts(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from trio_websocket import open_websocket_url

    from tests.interop.servers import ServerProcess

    monkeypatch.setenv("TRIO_CABLE_REDIS_URL", redis_server.url)
    with (
        ServerProcess("hypercorn", tmp_path) as one,
        ServerProcess("hypercorn", tmp_path) as two,
    ):
        await one.wait_ready()
        await two.wait_ready()
        ident = identifier_for("ChatChannel", room="shared")
        subscribe_frame = json.dumps({"command": "subscribe", "identifier": ident})
        async with (
            open_websocket_url(one.url, subprotocols=["actioncable-v1-json"]) as c1,
            open_websocket_url(two.url, subprotocols=["actioncable-v1-json"]) as c2,
        ):

            async def next_data(ws: Any) -> Any:
                with trio.fail_after(LOSS_BOUND):
                    while True:
                        frame = json.loads(await ws.get_message())
                        if "message" in frame and frame.get("type") is None:
                            return frame["message"]

            for ws in (c1, c2):
                await ws.send_message(subscribe_frame)
                with trio.fail_after(LOSS_BOUND):
                    while "confirm" not in await ws.get_message():
                        pass
            for n, server in enumerate((one, two, one)):
                await server.broadcast("chat:shared", {"n": n})
                assert await next_data(c1) == {"n": n}
                assert await next_data(c2) == {"n": n}
            # a separate plain Python process (a script, a job)
            script = (
                "import sys; from trio_cable import redis_broadcast; "
                "redis_broadcast(sys.argv[1], 'chat:shared', {'n': 'job'})"
            )
            await trio.run_process([sys.executable, "-c", script, redis_server.url])
            assert await next_data(c1) == {"n": "job"}
            assert await next_data(c2) == {"n": "job"}
            # exactly once each: nothing more arrives
            for ws in (c1, c2):
                with trio.move_on_after(0.3):
                    extra = await next_data(ws)
                    pytest.fail(f"delivered twice: {extra}")
            # the moment a client sees its confirmation, the other process
            # broadcasts: delivered every time
            for n in range(20):
                room = identifier_for("ChatChannel", room=f"fresh{n}")
                await c1.send_message(
                    json.dumps({"command": "subscribe", "identifier": room})
                )
                with trio.fail_after(LOSS_BOUND):
                    while "confirm" not in await c1.get_message():
                        pass
                await two.broadcast(f"chat:fresh{n}", {"fresh": n})
                got = await next_data(c1)
                while got.get("welcome"):
                    got = await next_data(c1)
                assert got == {"fresh": n}
            stats = await one.stats()
            assert stats["redis"]["connected"] is True


async def test_scaling_doc_examples_run(redis_server: RedisServer) -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).parents[2] / "docs" / "scaling.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)
    source = "\n".join(blocks).replace("redis://127.0.0.1:6379/0", redis_server.url)
    namespace: dict[str, Any] = {}
    cable = make_cable(redis_server.url)
    async with cable.running(), cable_test_client(cable) as ws:
        await ws.subscribe("Room", room="general")
        source = source.replace('"chat:general"', '"room:general"')
        await trio.to_thread.run_sync(exec, source, namespace)
        assert await next_message(ws) == {"message": "deploy done"}
    assert isinstance(namespace["cable"], RedisCable)


def test_the_redis_url_stays_out_of_the_options_repr() -> None:
    url = "redis://user:pa55word@127.0.0.1:6379/0"
    options = Cable(redis_url=url).options
    assert options.redis_url == url
    assert "pa55word" not in repr(options)


async def test_a_shutdown_meeting_a_failing_redis_call_ends_as_the_shutdown() -> None:
    """A cable stopped while its heartbeat times out against a hung Redis
    gets the cancellation and the timeout in one group; the bridge lets
    the cancellation go on alone (the timeout escaped cable.running()
    before). Anything else in the group still escapes."""
    import redis

    from trio_cable._redis import _is_connection_failure
    from trio_cable._util import raise_cancellation

    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            cancelled = exc
            raise
    timeout = BaseExceptionGroup("", [cancelled, redis.TimeoutError("read")])
    with pytest.raises(trio.Cancelled) as caught:
        raise_cancellation(timeout, moot=_is_connection_failure)
    assert caught.value is cancelled
    other = BaseExceptionGroup("", [cancelled, ValueError("a bug")])
    raise_cancellation(other, moot=_is_connection_failure)  # returns: a bug stays
