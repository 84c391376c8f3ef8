"""Session resumption (the extended protocol) on the in-memory transport.

A dropped ``actioncable-v1-ext-json`` client's session (identity,
subscriptions with their channel instances, streams, timers) is kept for
``session_ttl``; reconnecting with its ``sid`` restores it once, without
the connect hook nor ``subscribed()``; an expired or unknown sid gets a
fresh session; ``unsubscribed()`` runs when a kept session expires (or
the cable stops), never at the drop. Timed parts run on
``autojump_clock``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import task_count
from trio_cable import Cable, Channel, periodically
from trio_cable._resume import RESTORE_HOLD
from trio_cable.testing import TestClient, cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]
ROOM = identifier_for("Room", room="r1")


def room_cable(**options: Any) -> tuple[Cable, Counter[str]]:
    """A cable whose hooks count their calls."""
    calls: Counter[str] = Counter()

    async def connect(request: Any) -> str:
        calls["connect"] += 1
        return request.query.get("user", "anon")

    cable = Cable(connect=connect, history=["room:*"], **options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            calls["subscribed"] += 1
            self.said: list[str] = []
            self.stream_from(f"room:{self.params['room']}", whisper=True)

        async def unsubscribed(self) -> None:
            calls["unsubscribed"] += 1

        def say(self, data: dict[str, Any]) -> list[str]:
            # State in the channel instance: it survives a restore.
            self.said.append(data["text"])
            return [*self.said, str(self.current_user)]

    return cable, calls


def history_command(since: int = 0, **streams: Any) -> str:
    return json.dumps(
        {
            "command": "history",
            "identifier": ROOM,
            "history": {"since": since, "streams": streams},
        }
    )


async def drop(client: TestClient) -> None:
    """Cut the client's socket and wait until the server has let go."""
    conn = client.connection
    await client.close()
    cable = conn.cable
    while conn in cable.connections:  # type: ignore[attr-defined]
        await trio.testing.wait_all_tasks_blocked()


async def test_a_dropped_session_is_restored_once() -> None:
    cable, calls = room_cable()
    async with cable.running():
        async with cable_test_client(
            cable, subprotocols=EXT, query={"user": "ann"}
        ) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            reply = await first.call("Room", "say", {"text": "a"}, room="r1")
            assert reply["result"] == ["a", "ann"]
            await drop(first)
        assert calls == {"connect": 1, "subscribed": 1}  # no unsubscribed()
        assert len(cable.sessions.store) == 1

        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome == {
                "type": "welcome",
                "sid": c.welcome["sid"],
                "restored": True,
                "restored_ids": [ROOM],
            }
            assert c.welcome["sid"] != sid  # a new one, as AnyCable does
            # Identity and channel state back, with no hook run again.
            reply = await c.call("Room", "say", {"text": "b"}, room="r1")
            assert reply["result"] == ["a", "b", "ann"]
            assert calls == {"connect": 1, "subscribed": 1}
            assert cable.counters["sessions_restored"] == 1
            # Its stream is live again (after the history request).
            await c.send_raw(history_command())
            assert (await c.receive())["type"] == "confirm_history"
            await cable.broadcast("room:r1", {"n": 1})
            assert (await c.receive())["message"] == {"n": 1}
            assert len(cable.sessions.store) == 0
            await drop(c)
        # A second reconnect with the old sid: a fresh session.
        async with cable_test_client(
            cable, subprotocols=EXT, query={"sid": sid}
        ) as fresh:
            assert "restored" not in fresh.welcome
            assert calls["connect"] == 2
            assert fresh.connection.subscriptions == {}
        # The session kept after the restored connection dropped is the
        # one that ends (unsubscribed() once) as the cable stops.
    assert calls == {"connect": 2, "subscribed": 1, "unsubscribed": 1}


async def test_unknown_sid_gets_a_fresh_session() -> None:
    cable, calls = room_cable()
    async with (
        cable.running(),
        cable_test_client(
            cable, subprotocols=EXT, headers={"X-AnyCable-Restore-Sid": "nope"}
        ) as client,
    ):
        assert set(client.welcome) == {"type", "sid"}
        assert calls["connect"] == 1


async def test_the_header_wins_over_the_query_parameter() -> None:
    cable, calls = room_cable()
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            await drop(first)
        headers = {"X-AnyCable-Restore-Sid": sid}
        async with cable_test_client(
            cable, subprotocols=EXT, headers=headers, query={"sid": "other"}
        ) as again:
            assert again.welcome["restored"] is True
    assert calls["connect"] == 1


async def test_history_after_a_restore_has_no_gap_and_no_duplicate() -> None:
    """Missed while away, and broadcast between the restore and the
    history request: each arrives once, in order."""
    cable, _ = room_cable()
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            await cable.broadcast("room:r1", {"n": 0})
            seen = await first.receive()
            await drop(first)
        await cable.broadcast("room:r1", {"n": 1})  # while away
        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            await cable.broadcast("room:r1", {"n": 2})  # restored, not asked yet
            position = {"epoch": seen["epoch"], "offset": seen["offset"]}
            await c.send_raw(history_command(**{"room:r1": position}))
            frames = [await c.receive() for _ in range(3)]
            assert [f.get("message") for f in frames] == [{"n": 1}, {"n": 2}, None]
            assert frames[2]["type"] == "confirm_history"
            await cable.broadcast("room:r1", {"n": 3})
            assert (await c.receive())["message"] == {"n": 3}
            with trio.move_on_after(0.1):  # nothing else (no duplicate)
                extra = await c.receive()
                pytest.fail(f"unexpected {extra}")


async def test_a_client_that_asks_no_history_gets_live_broadcasts_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, _ = room_cable(ping_interval=1000)
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            await drop(first)
        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            start = trio.current_time()
            await cable.broadcast("room:r1", {"n": 1})
            assert (await c.receive())["message"] == {"n": 1}
            assert trio.current_time() - start == pytest.approx(RESTORE_HOLD)


async def test_an_expired_session_runs_unsubscribed_and_is_not_restored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, calls = room_cable(session_ttl=10, ping_interval=1000)
    async with cable.running():
        before = task_count()
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            await drop(first)
        dropped = trio.current_time()
        await trio.sleep(9.9)
        assert calls["unsubscribed"] == 0
        await trio.sleep(0.2)
        assert calls["unsubscribed"] == 1
        assert len(cable.sessions.store) == 0
        # Driven by the cable's own task: nothing of it is left running.
        await trio.testing.wait_all_tasks_blocked()
        assert task_count() == before
        assert cable.hub.statistics().streams == 0
        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            assert "restored" not in c.welcome
            assert calls["connect"] == 2
        assert trio.current_time() - dropped < 11


async def test_shutdown_ends_kept_sessions_promptly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, calls = room_cable(ping_interval=1000)
    before = task_count()
    async with cable.running():
        for _ in range(3):
            async with cable_test_client(cable, subprotocols=EXT) as client:
                await client.subscribe("Room", room="r1")
                await drop(client)
        assert len(cable.sessions.store) == 3
        stopping = trio.current_time()
    assert trio.current_time() - stopping < 0.01  # no TTL waited out
    assert calls["unsubscribed"] == 3
    assert not cable.sessions.accepting
    assert task_count() == before


async def test_what_keeps_no_session() -> None:
    """Plain clients, a server-side close, and session_ttl=0: the
    subscription ends at the disconnect, as before."""
    cable, calls = room_cable()
    async with cable.running():
        async with cable_test_client(cable) as plain:
            await plain.subscribe("Room", room="r1")
            await drop(plain)
        assert calls["unsubscribed"] == 1
        async with cable_test_client(cable, subprotocols=EXT) as ext:
            await ext.subscribe("Room", room="r1")
            ext.connection.close("remote", reconnect=True)
            await drop(ext)
        assert calls["unsubscribed"] == 2
        assert len(cable.sessions.store) == 0
    cable, calls = room_cable(session_ttl=0)
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as ext:
            await ext.subscribe("Room", room="r1")
            await drop(ext)
        assert calls["unsubscribed"] == 1


async def test_max_sessions_evicts_the_oldest() -> None:
    cable, calls = room_cable(max_sessions=2)
    async with cable.running():
        sids = []
        for _ in range(3):
            async with cable_test_client(cable, subprotocols=EXT) as client:
                sids.append(client.welcome["sid"])
                await client.subscribe("Room", room="r1")
                await drop(client)
        while calls["unsubscribed"] < 1:
            await trio.testing.wait_all_tasks_blocked()
        assert len(cable.sessions.store) == 2
        async with cable_test_client(
            cable, subprotocols=EXT, query={"sid": sids[0]}
        ) as gone:
            assert "restored" not in gone.welcome
        async with cable_test_client(
            cable, subprotocols=EXT, query={"sid": sids[2]}
        ) as kept:
            assert kept.welcome["restored"] is True


async def test_timers_and_whispers_carry_on_after_a_restore(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ticks: list[str] = []
    cable = Cable(ping_interval=1000)

    @cable.channel
    class Ticker(Channel):
        async def subscribed(self) -> None:
            self.stream_from("chat", whisper=True)

        @periodically(1.0)
        async def tick(self) -> None:
            ticks.append(self.connection.id)

    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Ticker")
            await trio.sleep(1.5)
            assert len(ticks) == 1
            await drop(first)
        await trio.sleep(5)
        assert len(ticks) == 1  # stopped while the client is away
        async with (
            cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c,
            cable_test_client(cable, subprotocols=EXT) as other,
        ):
            await other.subscribe("Ticker")
            await trio.sleep(1.5)
            assert ticks.count(c.connection.id) == 1  # its timer runs again
            identifier = identifier_for("Ticker")
            whisper = {"command": "whisper", "identifier": identifier}
            await c.send_raw(json.dumps({**whisper, "data": {"hi": 1}}))
            assert (await other.receive())["message"] == {"hi": 1}


async def test_a_client_back_before_its_old_connection_ended_is_restored() -> None:
    """The old connection waits for an action in a worker thread (it
    cannot be cancelled): the session is handed over only once that has
    returned, and the reconnecting client waits for it."""
    started, release = threading.Event(), threading.Event()
    cable = Cable()

    @cable.channel
    class Slow(Channel):
        def work(self) -> None:
            started.set()
            release.wait(10)

    async with cable.running(), cable_test_client(cable, subprotocols=EXT) as first:
        sid = first.welcome["sid"]
        await first.subscribe("Slow")
        await first.perform("Slow", "work")
        await trio.to_thread.run_sync(started.wait, 10)
        old = first.connection
        await first.close()
        await trio.testing.wait_all_tasks_blocked()
        assert old in cable.connections  # still ending: its thread runs
        welcome: list[dict[str, Any]] = []

        async def come_back() -> None:
            async with cable_test_client(
                cable, subprotocols=EXT, query={"sid": sid}
            ) as again:
                welcome.append(again.welcome)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(come_back)
            await trio.testing.wait_all_tasks_blocked()
            assert welcome == []  # waiting for the old connection
            release.set()
        assert welcome[0]["restored_ids"] == [identifier_for("Slow")]


async def test_a_remote_disconnect_revokes_kept_sessions_of_that_identity() -> None:
    """Logged out while away: its session must not bring the identity
    back without the connect hook. A session dropped later is kept."""
    cable, calls = room_cable()
    async with cable.running():

        async def dropped(user: str) -> str:
            query = {"user": user}
            async with cable_test_client(cable, subprotocols=EXT, query=query) as c:
                await c.subscribe("Room", room="r1")
                await drop(c)
                return str(c.welcome["sid"])

        ann, bob = await dropped("ann"), await dropped("bob")
        assert await cable.disconnect("ann") == 0  # no open connection
        later = await dropped("ann")
        for sid, restored in ((ann, False), (bob, True), (later, True)):
            async with cable_test_client(
                cable, subprotocols=EXT, query={"sid": sid}
            ) as c:
                assert c.welcome.get("restored", False) is restored
        while calls["unsubscribed"] < 1:  # the revoked one ended
            await trio.testing.wait_all_tasks_blocked()
        assert calls["connect"] == 4


async def test_a_client_cut_off_for_no_pong_keeps_its_session(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, calls = room_cable(ping_interval=1.0, pong_timeout=5.0)
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as silent:
            sid = silent.welcome["sid"]
            await silent.subscribe("Room", room="r1")
            assert (await silent.receive())["reason"] == "no_pong"
            await drop(silent)
        assert calls["unsubscribed"] == 0
        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome["restored_ids"] == [ROOM]


async def test_a_pubsub_stream_is_restored_too() -> None:
    """The built-in ``$pubsub`` channel is a channel like any other: its
    subscription comes back with its stream."""
    cable = Cable(public_streams=True)
    identifier = json.dumps({"channel": "$pubsub", "stream_name": "news"})
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.send_raw(
                json.dumps({"command": "subscribe", "identifier": identifier})
            )
            assert (await first.receive())["type"] == "confirm_subscription"
            await drop(first)
        async with cable_test_client(cable, subprotocols=EXT, query={"sid": sid}) as c:
            assert c.welcome["restored_ids"] == [identifier]
            history = {"command": "history", "identifier": identifier, "history": {}}
            await c.send_raw(json.dumps(history))
            assert (await c.receive())["type"] == "confirm_history"
            await cable.broadcast("news", {"n": 1})
            assert (await c.receive())["message"] == {"n": 1}
