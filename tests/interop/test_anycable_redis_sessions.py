"""Sessions across workers, with AnyCable's own client: two real server
processes (``serve_cable`` on the direct transport, and Hypercorn) on one
real ``redis-server``, and ``@anycable/web`` in Node reaching them through
a TCP proxy the test cuts and re-points.

The client's session, kept in Redis by the worker it dropped from, is
restored by the other one: no second connect-hook call, no second
``subscribed()``, its channel restored (the channel state it declared,
the identity), broadcasts from either worker flowing on it. After the
TTL it gets a fresh session, and the old one's ``unsubscribed()`` ran
once. A worker restarted (SIGTERM, as a deploy does) while the client
was away restores it too.

The proxy sends new connections to a closed port while the session is
on its way to Redis (the client keeps retrying), so that the client
comes back to the other worker only once there is something to find
there: the test waits on that state, never on time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    RedisServer,
    TcpProxy,
    free_port,
    tcp_proxy,
    wait_until,
)
from tests.interop.nodeclient import (
    ANYCABLE_DRIVER,
    NodeClient,
    open_ac_client,
)
from tests.interop.servers import ServerKind, ServerProcess

NOTES = '{"channel":"NotesChannel","room":"x"}'

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]


@contextmanager
def workers(
    redis_server: RedisServer, tmp_path: Path, *kinds: ServerKind, ttl: float = 300
) -> Iterator[list[ServerProcess]]:
    env = {
        "TRIO_CABLE_REDIS_URL": redis_server.url,
        "CHAT_APP_SESSION_TTL": str(ttl),
    }
    started: list[ServerProcess] = []
    try:
        for kind in kinds:
            started.append(ServerProcess(kind, tmp_path, env).__enter__())
        yield started
    finally:
        for server in started:
            server.stop()


def kept_sessions(redis_server: RedisServer) -> int:
    with redis_server.client() as client:
        return int(client.zcard("trio_cable:sessions"))


async def subscribe(client: NodeClient, proxy: TcpProxy) -> None:
    """Connect as ann through ``proxy``, subscribe, note "a"."""
    url = f"ws://127.0.0.1:{proxy.port}/cable?user=ann"
    await client.send({"cmd": "connect", "url": url, "reconnectDelay": 200})
    await client.expect({"event": "cable_connect", "restored": False}, LOSS_BOUND)
    params = {"room": "x"}
    await client.send(
        {"cmd": "subscribe", "key": "n", "channel": "NotesChannel", "params": params}
    )
    await client.expect({"event": "subscribed", "key": "n"}, LOSS_BOUND)
    await note(client, "a", ["a"])


async def note(client: NodeClient, text: str, notes: list[str]) -> None:
    await client.send(
        {"cmd": "perform", "key": "n", "action": "note", "data": {"text": text}}
    )
    got = await client.expect({"event": "message", "key": "n"}, LOSS_BOUND)
    assert got["data"] == {"notes": notes, "user": "ann"}


def cut_off(proxy: TcpProxy) -> None:
    """Cut the client; its retries find nothing listening meanwhile."""
    proxy.upstream = free_port()
    proxy.cut()


async def test_anycable_web_resumes_its_session_on_the_other_worker(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with workers(redis_server, tmp_path, "direct", "hypercorn") as (a, b):
        async with (
            tcp_proxy(a.port) as proxy,
            open_ac_client(driver=ANYCABLE_DRIVER) as client,
        ):
            await subscribe(client, proxy)
            cut_off(proxy)
            await wait_until(lambda: kept_sessions(redis_server) == 1)
            proxy.upstream = b.port

            connected = await client.expect(
                {"event": "cable_connect", "reconnect": True}, LOSS_BOUND
            )
            assert connected["restored"] is True
            # Restored, not re-subscribed: the id was in restored_ids.
            channel = await client.expect(
                {"event": "connect", "key": "n", "reconnect": True}, LOSS_BOUND
            )
            assert channel["restored"] is True
            assert kept_sessions(redis_server) == 0
            # The channel's declared state and the identity, on b.
            await note(client, "b", ["a", "b"])
            # Broadcasts reach it from b, and from a through Redis.
            for n, server in enumerate((b, a)):
                await server.broadcast("notes:x", {"n": n})
                got = await client.expect({"event": "message", "key": "n"}, LOSS_BOUND)
                assert got["data"] == {"n": n}

            on_a, on_b = (await a.stats())["events"], (await b.stats())["events"]
            assert on_a["connect ann"] == on_a[f"subscribed {NOTES}"] == 1
            assert "connect ann" not in on_b  # no connect hook there
            assert f"subscribed {NOTES}" not in on_b  # nor subscribed()
            for events in (on_a, on_b):
                assert f"unsubscribed {NOTES}" not in events
            assert (await b.stats())["connections"] == 1
            assert (await a.stats())["connections"] == 0
            assert proxy.cuts == 1
            bad = [e for e in client.history if e["event"] in ("uncaught", "error")]
            assert bad == []


async def test_after_the_ttl_the_client_gets_a_fresh_session(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with workers(redis_server, tmp_path, "direct", "hypercorn", ttl=1) as (a, b):
        async with (
            tcp_proxy(a.port) as proxy,
            open_ac_client(driver=ANYCABLE_DRIVER) as client,
        ):
            await subscribe(client, proxy)
            cut_off(proxy)
            await wait_until(lambda: kept_sessions(redis_server) == 1)

            # Expired unrestored: one worker claims it and runs
            # unsubscribed() (once: claimed means gone from Redis).
            async def ended() -> int:
                total = 0
                for server in (a, b):
                    events = (await server.stats())["events"]
                    total += events.get(f"unsubscribed {NOTES}", 0)
                return total

            await wait_until(lambda: kept_sessions(redis_server) == 0)
            with trio.fail_after(LOSS_BOUND):
                while await ended() == 0:
                    await trio.sleep(0.02)  # polling other processes
            assert await ended() == 1

            proxy.upstream = b.port
            connected = await client.expect(
                {"event": "cable_connect", "reconnect": True}, LOSS_BOUND
            )
            assert connected["restored"] is False
            # A fresh session: the connect hook and subscribed() run on b,
            # and the channel starts again.
            await b.wait_for_event_count(f"subscribed {NOTES}", 1)
            assert (await b.stats())["events"]["connect ann"] == 1
            channel = await client.expect(
                {"event": "connect", "key": "n", "reconnect": True}, LOSS_BOUND
            )
            assert channel["restored"] is False
            await note(client, "b", ["b"])
            assert await ended() == 1


async def test_a_restarted_worker_restores_the_session(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with workers(redis_server, tmp_path, "direct") as (a,):
        async with (
            tcp_proxy(a.port) as proxy,
            open_ac_client(driver=ANYCABLE_DRIVER) as client,
        ):
            await subscribe(client, proxy)
            # Away while its worker restarts (SIGTERM, a clean stop, then
            # the same worker again, on the same port).
            proxy.cut()
            await wait_until(lambda: kept_sessions(redis_server) == 1)
            assert await a.terminate() == 0
            assert kept_sessions(redis_server) == 1  # not ended at the stop
            a.start()
            await a.wait_ready()

            connected = await client.expect(
                {"event": "cable_connect", "reconnect": True}, LOSS_BOUND
            )
            assert connected["restored"] is True
            await note(client, "b", ["a", "b"])
            events = (await a.stats())["events"]  # the new process's
            assert "connect ann" not in events
            assert f"subscribed {NOTES}" not in events
            await a.broadcast("notes:x", {"n": 1})
            got = await client.expect({"event": "message", "key": "n"}, LOSS_BOUND)
            assert got["data"] == {"n": 1}
