"""Presence on one cable, on the in-memory transport: client-driven join,
leave and info in both dialects, one id held by many subscriptions, the
grace after a drop (``autojump_clock``), server-side joins, the hooks,
and bad input refused with nothing else disturbed."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers.waiting import wait_until
from trio_cable import Cable, Channel, PresenceEvent
from trio_cable.testing import cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]
ROOM = identifier_for("Room", room="r1")


def make_cable(**options: Any) -> Cable:
    cable = Cable(**options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}", presence=True)

        async def enter(self, data: dict[str, Any]) -> None:
            self.presence.join(data["as"], {"name": data["name"]})

        async def exit(self) -> None:
            self.presence.leave()

    @cable.channel
    class Quiet(Channel):
        client_presence = False

        async def subscribed(self) -> None:
            self.stream_from("quiet", presence=True)

    @cable.channel
    class Silent(Channel):
        presence_events = False

        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}", presence=True)

    @cable.channel
    class Plain(Channel):
        async def subscribed(self) -> None:
            self.stream_from("plain")

        async def join_anyway(self) -> None:
            self.presence.join("x")

    return cable


def join(identifier: str, id: Any, info: Any = None) -> str:
    presence = {"id": id, "info": info}
    frame = {"command": "join", "identifier": identifier, "presence": presence}
    return json.dumps(frame)


def simple(name: str, identifier: str = ROOM) -> str:
    return json.dumps({"command": name, "identifier": identifier})


async def next_presence(client: Any) -> dict[str, Any]:
    """The next presence event of an extended client (skipping data)."""
    while True:
        frame = await client.receive()
        if frame.get("type") == "presence":
            assert frame["identifier"] == ROOM
            return dict(frame["message"])


async def test_ext_join_info_and_leave_with_two_tabs_of_one_id() -> None:
    cable = make_cable()
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as alice1,
        cable_test_client(cable, subprotocols=EXT) as alice2,
        cable_test_client(cable, subprotocols=EXT) as bob,
    ):
        for client in (alice1, alice2, bob):
            await client.subscribe("Room", room="r1")
        await alice1.send_raw(join(ROOM, "alice", {"name": "Alice"}))
        expected = {"type": "join", "id": "alice", "info": {"name": "Alice"}}
        for client in (alice1, alice2, bob):
            assert await next_presence(client) == expected
        # The second tab joins as the same id: no event, newer info.
        await alice2.send_raw(join(ROOM, "alice", {"name": "Alice B."}))
        await bob.send_raw(join(ROOM, 7, {"name": "Bob"}))
        assert await next_presence(bob) == {
            "type": "join",
            "id": "7",
            "info": {"name": "Bob"},
        }
        await bob.send_raw(simple("presence"))
        info = await next_presence(bob)
        assert info["type"] == "info"
        assert info["total"] == 2
        assert sorted(info["records"], key=lambda r: r["id"]) == [
            {"id": "7", "info": {"name": "Bob"}},
            {"id": "alice", "info": {"name": "Alice B."}},
        ]
        assert await cable.presence("room:r1") == {
            "alice": {"name": "Alice B."},
            "7": {"name": "Bob"},
        }
        # One tab leaves: nothing announced; the last one: one leave.
        await alice1.send_raw(simple("leave"))
        await alice2.send_raw(simple("unsubscribe"))
        assert await next_presence(bob) == {"type": "leave", "id": "alice"}
        assert await cable.presence("room:r1") == {"7": {"name": "Bob"}}
        # Nothing else came to alice1 meanwhile but alice's own events.
        assert await next_presence(alice1) == {
            "type": "join",
            "id": "7",
            "info": {"name": "Bob"},
        }
        assert await next_presence(alice1) == {"type": "leave", "id": "alice"}


async def test_plain_clients_get_ordinary_messages() -> None:
    cable = make_cable()
    async with (
        cable.running(),
        cable_test_client(cable) as plain,
        cable_test_client(cable, subprotocols=EXT) as ext,
    ):
        await plain.subscribe("Room", room="r1")
        await ext.subscribe("Room", room="r1")
        await plain.send_raw(join(ROOM, "p", ["any", "json"]))
        event = {"type": "join", "id": "p", "info": ["any", "json"]}
        assert await plain.receive() == {
            "identifier": ROOM,
            "message": {"presence": event},
        }
        assert await next_presence(ext) == event
        await plain.send_raw(simple("presence"))
        assert await plain.receive() == {
            "identifier": ROOM,
            "message": {
                "presence": {"type": "info", "total": 1, "records": [event | {}]}
                | {"records": [{"id": "p", "info": ["any", "json"]}]}
            },
        }


@pytest.mark.parametrize("dialect", [EXT, []], ids=["ext", "plain"])
async def test_a_dropped_connection_leaves_after_the_grace(
    autojump_clock: trio.testing.MockClock, dialect: list[str]
) -> None:
    """(The extended client's session is kept, the plain one's is not:
    either way the member stays for the grace.)"""
    cable = make_cable(presence_grace=10.0)
    events: list[PresenceEvent] = []
    cable.on_presence(events.append)
    async with cable.running(), cable_test_client(cable, subprotocols=EXT) as bob:
        await bob.subscribe("Room", room="r1")
        async with cable_test_client(cable, subprotocols=dialect) as alice:
            await alice.subscribe("Room", room="r1")
            await alice.perform("Room", "enter", {"as": "a", "name": "A"}, room="r1")
            assert (await next_presence(bob))["type"] == "join"
        dropped = trio.current_time()
        # A reload within the grace: no leave, no second join.
        await trio.sleep(5)
        async with cable_test_client(cable, subprotocols=EXT) as again:
            await again.subscribe("Room", room="r1")
            await again.send_raw(join(ROOM, "a", {"name": "A"}))
            await again.send_raw(simple("presence"))
            assert (await next_presence(again))["total"] == 1
            assert [e.type for e in events] == ["join"]
        # Gone for good: the leave comes one grace after this drop.
        assert await next_presence(bob) == {"type": "leave", "id": "a"}
        assert 15.0 <= trio.current_time() - dropped <= 15.0 + 1e-6
        # An explicit unsubscribe, by contrast, leaves at once.
        async with cable_test_client(cable, subprotocols=dialect) as carol:
            await carol.subscribe("Room", room="r1")
            await carol.send_raw(join(ROOM, "c"))
            assert (await next_presence(bob))["type"] == "join"
            left = trio.current_time()
            await carol.unsubscribe("Room", room="r1")
            assert await next_presence(bob) == {"type": "leave", "id": "c"}
            assert trio.current_time() == left
        assert [(e.type, e.stream, e.id, e.info) for e in events[:2]] == [
            ("join", "room:r1", "a", {"name": "A"}),
            ("leave", "room:r1", "a", None),
        ]


async def test_events_nobody_here_takes_are_not_broadcast() -> None:
    """Subscriptions that take no events (``presence_events = False``,
    as large audiences have): while nobody here listens, a join or leave
    is not broadcast at all; the hooks still run, one id held by two
    tabs still joins once and leaves after the last, and a subscriber
    that does listen gets the next event."""
    cable = make_cable(presence_grace=0)
    silent = identifier_for("Silent", room="r1")
    events: list[tuple[str, str]] = []
    cable.on_presence(lambda event: events.append((event.type, event.id)))
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as tab1,
        cable_test_client(cable, subprotocols=EXT) as tab2,
        cable_test_client(cable, subprotocols=EXT) as other,
    ):
        for client in (tab1, tab2, other):
            await client.subscribe("Silent", room="r1")
        await tab1.send_raw(join(silent, "a", 1))
        await tab2.send_raw(join(silent, "a", 2))
        await other.send_raw(join(silent, "b"))
        await wait_until(lambda: len(events) == 2)
        await tab1.send_raw(simple("leave", silent))  # tab2 still holds a
        await tab2.send_raw(simple("presence", silent))
        while (frame := await tab2.receive()).get("type") != "presence":
            pass
        assert frame["message"]["records"] == [
            {"id": "a", "info": 2},
            {"id": "b", "info": None},
        ]
        await tab2.unsubscribe("Silent", room="r1")
        await wait_until(lambda: len(events) == 3)
        assert events == [("join", "a"), ("join", "b"), ("leave", "a")]
        assert cable.stats()["broadcasts"] == 0
        async with cable_test_client(cable, subprotocols=EXT) as watcher:
            await watcher.subscribe("Room", room="r1")
            await other.unsubscribe("Silent", room="r1")
            assert await next_presence(watcher) == {"type": "leave", "id": "b"}
        assert cable.stats()["broadcasts"] == 1


async def test_server_side_join_and_async_hooks() -> None:
    cable = make_cable()
    seen: list[tuple[str, str]] = []
    done = trio.Event()

    @cable.on_presence
    async def record(event: PresenceEvent) -> None:
        await trio.lowlevel.checkpoint()
        seen.append((event.type, event.id))
        if event.type == "leave":
            done.set()

    async with cable.running(), cable_test_client(cable, subprotocols=EXT) as c:
        await c.subscribe("Room", room="r1")
        await c.perform("Room", "enter", {"as": "srv", "name": "S"}, room="r1")
        assert await next_presence(c) == {
            "type": "join",
            "id": "srv",
            "info": {"name": "S"},
        }
        await c.perform("Room", "exit", room="r1")
        assert await next_presence(c) == {"type": "leave", "id": "srv"}
        await done.wait()
        assert seen == [("join", "srv"), ("leave", "srv")]


async def test_bad_input_is_refused_and_nothing_else_is_disturbed() -> None:
    cable = make_cable(presence_info_bytes=100)
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as bad,
        cable_test_client(cable, subprotocols=EXT) as good,
    ):
        await bad.subscribe("Room", room="r1")
        await good.subscribe("Room", room="r1")
        await bad.subscribe("Plain")
        await bad.subscribe("Quiet")
        plain, quiet = identifier_for("Plain"), identifier_for("Quiet")
        attempts = [
            (join(ROOM, "big", "x" * 200), "presence_info_too_large"),
            (join(ROOM, ""), "invalid_request"),
            (join(ROOM, "y" * 300), "invalid_request"),
            (join(ROOM, {"an": "object"}), "invalid_request"),
            (simple("join"), "invalid_request"),
            (join(plain, "p"), "presence_not_allowed"),
            (join(quiet, "q"), "presence_not_allowed"),
            (join(identifier_for("Room", room="nope"), "n"), "not_subscribed"),
        ]
        for frame, reason in attempts:
            await bad.send_raw(frame)
            answer = await bad.receive()
            assert answer["type"] == "error", (frame, answer)
            assert answer["reason"] == reason, (frame, answer)
        # Asking who is there without a presence stream: an error, and the
        # info request answered with AnyCable's presence error.
        await bad.send_raw(simple("presence", plain))
        assert (await bad.receive())["reason"] == "presence_not_allowed"
        assert (await bad.receive())["message"] == {"type": "error"}
        # Quiet lets clients ask who is there, not join.
        await bad.send_raw(simple("presence", quiet))
        answer = await bad.receive()
        assert answer["message"] == {"type": "info", "total": 0, "records": []}
        # A channel that opened no presence stream cannot join either.
        reply = await bad.call("Plain", "join_anyway")
        assert reply["error"]["reason"] == "server_error"
        # Nothing joined; the connection and the other client carry on.
        assert await cable.presence("room:r1") == {}
        await good.send_raw(join(ROOM, "g", 1))
        assert await next_presence(bad) == {"type": "join", "id": "g", "info": 1}
        assert await next_presence(good) == {"type": "join", "id": "g", "info": 1}


async def test_a_restored_session_keeps_its_presence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An extended client that drops and resumes its session (no
    ``subscribed()`` again) joins again as @anycable/web does after a
    restore: no leave, no second join, its presence stream still open."""
    cable = make_cable(presence_grace=10.0)
    events: list[PresenceEvent] = []
    cable.on_presence(events.append)
    async with cable.running():
        async with cable_test_client(cable, subprotocols=EXT) as first:
            sid = first.welcome["sid"]
            await first.subscribe("Room", room="r1")
            await first.send_raw(join(ROOM, "a", 1))
            assert (await next_presence(first))["type"] == "join"
        async with cable_test_client(
            cable, subprotocols=EXT, query={"sid": sid}
        ) as again:
            assert again.welcome["restored"] is True
            await again.send_raw(join(ROOM, "a", 1))
            await again.send_raw(simple("presence"))
            info = await next_presence(again)
            assert info == {
                "type": "info",
                "total": 1,
                "records": [{"id": "a", "info": 1}],
            }
            await trio.sleep(20)  # past the grace: still there
            assert await cable.presence("room:r1") == {"a": 1}
        assert [e.type for e in events] == ["join"]


async def test_a_join_flood_is_rate_limited_and_disturbs_nobody() -> None:
    """One subscription holds one id: a flood of joins under new ids is
    cut by the connection's command rate limit (``rate_limited``), and the
    other client's joins and the member list carry on."""
    cable = make_cable(commands_per_second=50, command_burst=20)
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as flood,
        cable_test_client(cable, subprotocols=EXT) as calm,
    ):
        await flood.subscribe("Room", room="r1")
        await calm.subscribe("Room", room="r1")
        for n in range(200):
            await flood.send_raw(join(ROOM, f"f{n}"))
        await calm.send_raw(join(ROOM, "calm"))
        reasons = set()
        while True:
            frame = await calm.receive()
            if frame.get("type") == "presence" and frame["message"]["id"] == "calm":
                break
        # The flood is told why (presence events it got come before).
        while (frame := await flood.receive()).get("type") == "presence":
            pass
        reasons.add(frame.get("reason"))
        assert reasons == {"rate_limited"}
        members = await cable.presence("room:r1")
        # The flood's subscription is one member at most; calm is listed.
        assert "calm" in members
        assert len(members) <= 2
        assert cable.counters["rate_limited"] > 0
