"""The real ``@rails/actioncable`` client against real server processes.

Every test runs against each server kind (see ``servers.py``): Hypercorn
serving ``tests.apps.chat_app:app``, and ``serve_cable`` on each of its
socket transports (``direct``, the default, and ``trio-websocket``).
The client runs in Node through ``ac_driver.mjs``; with
``"trace": true`` the driver also reports every frame the client receives,
which lets a test see what the server sent even where the client's
callbacks (rightly) stay silent.

Ordering, not sleeping: the server handles one socket's commands in order
and writes one socket's frames in order, so an action's reply doubles as
proof that every earlier command was handled. Only "the client does not
do X again" is checked over a time window, since absence has no event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trio

from tests.interop.nodeclient import NodeClient, open_ac_client
from tests.interop.protocol_cases import bad_frames
from tests.interop.servers import ServerProcess
from trio_cable.client import open_cable_client

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]

Event = dict[str, Any]

#: The official client retries an unanswered subscribe every 500 ms.
RESUBSCRIBE_WINDOW = 1.6

WELCOME = {"type": "welcome"}
UNAUTHORIZED = {"type": "disconnect", "reason": "unauthorized", "reconnect": False}
SERVER_RESTART = {"type": "disconnect", "reason": "server_restart", "reconnect": True}


@pytest.fixture
async def ac() -> AsyncIterator[NodeClient]:
    async with open_ac_client() as client:
        yield client


def unique(prefix: str) -> str:
    """A room/topic name no other test uses (the servers are shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- helpers around the driver ---------------------------------------------------


async def connect(ac: NodeClient, server: ServerProcess, user: str = "alice") -> None:
    """Connect (tracing frames) and wait for the socket and the welcome.

    Waiting for the welcome matters: a subscription created between the
    socket opening and the welcome is sent twice by the client (right away,
    and again when the welcome makes it reload every subscription).
    """
    await ac.send({"cmd": "connect", "url": f"{server.url}?user={user}", "trace": True})
    opened = await ac.expect({"event": "socket_open"})
    assert opened["protocol"] == "actioncable-v1-json"
    await ac.expect(frame(lambda f: f == WELCOME))


async def subscribe(ac: NodeClient, key: str, channel: str, **params: str) -> None:
    await ac.send(
        {"cmd": "subscribe", "key": key, "channel": channel, "params": params}
    )


async def perform(ac: NodeClient, key: str, action: str, **data: Any) -> None:
    await ac.send({"cmd": "perform", "key": key, "action": action, "data": data})


def received(key: str, data: Any) -> Callable[[Event], bool]:
    return lambda e: (
        e["event"] == "received" and e["key"] == key and e.get("data") == data
    )


def frame(predicate: Callable[[dict[str, Any]], bool]) -> Callable[[Event], bool]:
    """Match a traced frame (a frame the client received) by its JSON."""
    return lambda e: e["event"] == "frame" and predicate(json.loads(e["data"]))


def position(ac: NodeClient, event: Event) -> int:
    return next(i for i, seen in enumerate(ac.history) if seen is event)


def seen(ac: NodeClient, match: Callable[[Event], bool]) -> list[Event]:
    """Every event read so far (consumed or not) that matches."""
    return [event for event in ac.history if match(event)]


def assert_client_healthy(ac: NodeClient, sockets: int = 1) -> None:
    """No exception in the client, nothing dropped, no extra sockets."""
    bad = seen(ac, lambda e: e["event"] in ("uncaught", "error", "not_sent"))
    assert bad == [], ac.history
    assert len(seen(ac, lambda e: e["event"] == "socket_open")) == sockets


async def subscribed_rooms(
    ac: NodeClient, user: str, subs: dict[str, str]
) -> dict[str, str]:
    """Wait for ChatChannel subscriptions ``key -> room``; check each one's
    welcome came before its ``connected``; return ``key -> identifier``."""
    identifiers = {}
    for key, room in subs.items():
        connected = await ac.expect({"event": "connected", "key": key})
        assert connected["reconnected"] is False
        welcome = await ac.expect(received(key, {"welcome": room, "user": user}))
        assert position(ac, welcome) < position(ac, connected)
        identifiers[key] = connected["identifier"]
    return identifiers


# -- the tests -------------------------------------------------------------------


async def test_channels_multiplexed_over_one_socket(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """Two rooms of one channel and another channel share one socket;
    actions, transmits and broadcasts (from a channel and from outside)
    reach exactly the subscription they are meant for."""
    server = cable_server
    r1, r2, topic = unique("r1"), unique("r2"), unique("topic")
    with trio.fail_after(20):
        await connect(ac, server, user="alice")
        await subscribe(ac, "k1", "ChatChannel", room=r1)
        await subscribe(ac, "k2", "ChatChannel", room=r2)
        await subscribe(ac, "k3", "EchoChannel", topic=topic)
        await subscribed_rooms(ac, "alice", {"k1": r1, "k2": r2})
        await ac.expect({"event": "connected", "key": "k3"})

        await perform(ac, "k1", "whoami")
        await ac.expect(received("k1", {"user": "alice"}))

        # speak broadcasts to the room; each subscription gets only its room
        await perform(ac, "k1", "speak", message="hello one")
        await perform(ac, "k2", "speak", message="hello two")
        await ac.expect(received("k1", {"message": "hello one", "room": r1}))
        await ac.expect(received("k2", {"message": "hello two", "room": r2}))
        crossed = seen(
            ac,
            lambda e: (
                e["event"] == "received"
                and isinstance(e.get("data"), dict)
                and e["data"].get("room") == (r2 if e["key"] == "k1" else r1)
            ),
        )
        assert crossed == []

        # the default action: the client's send() without an action
        await ac.send({"cmd": "send", "key": "k3", "data": {"text": "ping"}})
        await ac.expect(received("k3", {"echo": {"text": "ping"}}))

        # broadcasts from outside any channel (the server's HTTP endpoint)
        assert await server.broadcast(f"chat:{r2}", {"news": "for two"}) == 1
        assert await server.broadcast(f"echo:{topic}", {"news": "echo"}) == 1
        await ac.expect(received("k2", {"news": "for two"}))
        await ac.expect(received("k3", {"news": "echo"}))
        stray = seen(ac, lambda e: e.get("data") == {"news": "for two"})
        assert [e["key"] for e in stray] == ["k2"]

        # one subscribe each, so one confirmation each
        confirmed = [e["key"] for e in seen(ac, lambda e: e["event"] == "connected")]
        assert sorted(confirmed) == ["k1", "k2", "k3"]
        streams = (await server.stats())["streams"]
        names = (f"chat:{r1}", f"chat:{r2}", f"echo:{topic}")
        assert [streams[name] for name in names] == [1, 1, 1]
    assert_client_healthy(ac)


async def test_rejections_are_final(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """RejectingChannel and an unknown channel get ``rejected``; the client
    stops re-sending their subscribe; what the channel transmitted before
    rejecting never arrives; the connection keeps working."""
    server = cable_server
    room = unique("room")
    with trio.fail_after(20):
        await connect(ac, server)
        await subscribe(ac, "no", "RejectingChannel", tag=unique("tag"))
        await subscribe(ac, "ghost", "NoSuchChannel", room=room)
        await subscribe(ac, "ok", "ChatChannel", room=room)
        refused = (await ac.expect({"event": "rejected", "key": "no"}))["identifier"]
        unknown = (await ac.expect({"event": "rejected", "key": "ghost"}))["identifier"]
        await ac.expect({"event": "connected", "key": "ok"})

        def rejection(identifier: str) -> Callable[[Event], bool]:
            return frame(
                lambda f: (
                    f.get("type") == "reject_subscription"
                    and f["identifier"] == identifier
                )
            )

        await ac.expect(rejection(refused))
        unknown_frame = await ac.expect(rejection(unknown))
        assert json.loads(unknown_frame["data"]).get("reason") == "unknown_channel"
        # Any re-sent subscribe would be answered with another rejection.
        await ac.assert_no_event(
            lambda e: rejection(refused)(e) or rejection(unknown)(e),
            within=RESUBSCRIBE_WINDOW,
        )
        assert (await server.stats())["events"][f"subscribed {refused}"] == 1
        assert seen(ac, lambda e: e["event"] == "received" and e["key"] != "ok") == []

        await perform(ac, "ok", "speak", message="still here")
        await ac.expect(received("ok", {"message": "still here", "room": room}))
    assert_client_healthy(ac)


async def test_unsubscribe_stops_delivery(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """After unsubscribing one room the server stops delivering it (its
    stream has no subscriber, its ``unsubscribed()`` ran) while the other
    subscription carries on; subscribing again works."""
    server = cable_server
    ra, rb = unique("ra"), unique("rb")
    with trio.fail_after(20):
        await connect(ac, server)
        await subscribe(ac, "a", "ChatChannel", room=ra)
        await subscribe(ac, "b", "ChatChannel", room=rb)
        ids = await subscribed_rooms(ac, "alice", {"a": ra, "b": rb})

        await ac.send({"cmd": "unsubscribe", "key": "a"})
        # A reply on "b" proves the server handled the unsubscribe before.
        await perform(ac, "b", "speak", message="after")
        await ac.expect(received("b", {"message": "after", "room": rb}))

        assert await server.broadcast(f"chat:{ra}", {"news": "to nobody"}) == 0
        assert await server.broadcast(f"chat:{rb}", {"news": "to b"}) == 1
        await ac.expect(received("b", {"news": "to b"}))
        await server.wait_for_event_count(f"unsubscribed {ids['a']}", 1)
        stats = await server.stats()
        assert f"unsubscribed {ids['b']}" not in stats["events"]
        assert f"chat:{ra}" not in stats["streams"]

        # Everything the server ever sent on "a": its welcome and confirmation.
        frames_a = seen(ac, frame(lambda f: f.get("identifier") == ids["a"]))
        kinds = [json.loads(e["data"]).get("type", "message") for e in frames_a]
        assert kinds == ["message", "confirm_subscription"]

        await subscribe(ac, "a2", "ChatChannel", room=ra)
        await ac.expect({"event": "connected", "key": "a2"})
        assert await server.broadcast(f"chat:{ra}", {"news": "again"}) == 1
        await ac.expect(received("a2", {"news": "again"}))
    assert_client_healthy(ac)


async def test_action_replies_never_reach_the_official_client(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """An action that returns a value: the official client (which never
    asks for a reply) sees only what the action transmitted, while the
    Python client calling the same action on the same server gets the
    return value."""
    server = cable_server
    room = unique("tally")
    with trio.fail_after(20):
        await connect(ac, server)
        await subscribe(ac, "t", "ChatChannel", room=room)
        ids = await subscribed_rooms(ac, "alice", {"t": room})
        await perform(ac, "t", "tally", n=1)
        await ac.expect(received("t", {"tallying": 1}))
        async with (
            open_cable_client(f"{server.url}?user=bob") as client,
            client.subscribe("ChatChannel", room=room) as chat,
        ):
            assert await chat.call("tally", {"n": 2}) == {"tally": 2}
            assert await chat.receive() == {"welcome": room, "user": "bob"}
            assert await chat.receive() == {"tallying": 2}
        # whoami's answer proves every earlier frame has been read
        await perform(ac, "t", "whoami")
        await ac.expect(received("t", {"user": "alice"}))
        frames = seen(ac, frame(lambda f: f.get("identifier") == ids["t"]))
        kinds = [json.loads(e["data"]).get("type", "message") for e in frames]
        assert kinds == ["message", "confirm_subscription", "message", "message"]
        got = [e.get("data") for e in seen(ac, lambda e: e["event"] == "received")]
        assert got == [
            {"welcome": room, "user": "alice"},
            {"tallying": 1},
            {"user": "alice"},
        ]
    assert_client_healthy(ac)


async def test_connect_hook_rejection_is_final(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """``user=intruder`` is refused by the connect hook: the client gets
    ``disconnect`` (unauthorized, reconnect false), reports
    ``disconnected`` without reconnecting, and never connects."""
    server = cable_server
    with trio.fail_after(20):
        before = (await server.stats())["events"].get("connection_rejected", 0)
        # Subscribe while the socket is still connecting: creating a
        # subscription later, with no socket open, would make the client
        # open a new one (ensureActiveConnection), hook refusal or not.
        await ac.send(
            {"cmd": "connect", "url": f"{server.url}?user=intruder", "trace": True}
        )
        await subscribe(ac, "k1", "ChatChannel", room=unique("room"))
        opened = await ac.expect({"event": "socket_open"})
        assert opened["protocol"] == "actioncable-v1-json"
        await ac.expect(frame(lambda f: f == UNAUTHORIZED))
        disconnected = await ac.expect({"event": "disconnected", "key": "k1"})
        assert disconnected["willAttemptReconnect"] is False
        await ac.expect({"event": "socket_close"})
        # A running connection monitor would reopen a closed socket 200 ms
        # after the page becomes visible again; a stopped one does nothing.
        await ac.send({"cmd": "visibility", "state": "hidden"})
        await ac.send({"cmd": "visibility", "state": "visible"})
        await ac.assert_no_event({"event": "socket_open"}, within=0.8)
        assert seen(ac, lambda e: e["event"] in ("connected", "received")) == []
        assert seen(ac, frame(lambda f: f == WELCOME)) == []
        stats = await server.stats()
        assert stats["events"]["connection_rejected"] == before + 1
    assert_client_healthy(ac)


async def test_protocol_errors_leave_the_connection_usable(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """Each bad frame, sent raw on the official client's own socket, is
    answered with an error frame the client ignores: no ``received``, no
    exception, no disconnect; both subscriptions still work afterwards."""
    server = cable_server
    ra, rb = unique("ra"), unique("rb")
    with trio.fail_after(30):
        await connect(ac, server)
        await subscribe(ac, "a", "ChatChannel", room=ra)
        await subscribe(ac, "b", "ChatChannel", room=rb)
        ids = await subscribed_rooms(ac, "alice", {"a": ra, "b": rb})

        for case in bad_frames(ids["a"]):
            await ac.send({"cmd": "raw", "text": case.text})
            reply = await ac.expect(frame(lambda f: f.get("type") == "error"))
            error = json.loads(reply["data"])
            assert error["reason"] == case.reason, (case.name, error)
            assert error["identifier"] == "", case.name  # matches no subscription

        await perform(ac, "a", "speak", message="a works")
        await perform(ac, "b", "speak", message="b works")
        await ac.expect(received("a", {"message": "a works", "room": ra}))
        await ac.expect(received("b", {"message": "b works", "room": rb}))

        # Only the welcomes and the two broadcasts reached the callbacks.
        assert len(seen(ac, lambda e: e["event"] == "received")) == 4
        assert seen(ac, lambda e: e["event"] in ("disconnected", "socket_close")) == []
        events = (await server.stats())["events"]
        assert events[f"subscribed {ids['a']}"] == events[f"subscribed {ids['b']}"] == 1
    assert_client_healthy(ac)


async def test_identifier_is_echoed_verbatim(
    cable_server: ServerProcess, ac: NodeClient
) -> None:
    """The client matches frames by comparing identifier strings: params in
    an unusual key order and non-ASCII text still reach the subscription."""
    server = cable_server
    room = unique('zürich ✓ "q" /')
    with trio.fail_after(20):
        await connect(ac, server)
        # no "channel" argument: the driver sends these params as they are,
        # so the identifier is {"room":...,"channel":"ChatChannel"}
        params = {"room": room, "channel": "ChatChannel"}
        await ac.send({"cmd": "subscribe", "key": "odd", "params": params})
        connected = await ac.expect({"event": "connected", "key": "odd"})
        assert connected["identifier"] == json.dumps(
            params, separators=(",", ":"), ensure_ascii=False
        )
        await ac.expect(received("odd", {"welcome": room, "user": "alice"}))
        await perform(ac, "odd", "speak", message="grüße 🎉")
        await ac.expect(received("odd", {"message": "grüße 🎉", "room": room}))
        assert await server.broadcast(f"chat:{room}", {"news": "ünïcode"}) == 1
        await ac.expect(received("odd", {"news": "ünïcode"}))
    assert_client_healthy(ac)


@pytest.mark.slow
async def test_graceful_shutdown_sends_server_restart(
    fresh_server: ServerProcess, ac: NodeClient
) -> None:
    """SIGTERM: the server tells the client ``server_restart`` (reconnect
    true) before it goes, and exits cleanly. (Hypercorn first waits its
    graceful timeout, 3 s by default, for connections to end by themselves.)"""
    server = fresh_server
    with trio.fail_after(20):
        await connect(ac, server)
        await subscribe(ac, "chat", "ChatChannel", room=unique("room"))
        await ac.expect({"event": "connected", "key": "chat"})
        assert await server.terminate() == 0
        await ac.expect(frame(lambda f: f == SERVER_RESTART))
        lost = await ac.expect({"event": "disconnected", "key": "chat"})
        assert lost["willAttemptReconnect"] is True
    assert_client_healthy(ac)


@pytest.mark.slow
async def test_client_reconnects_after_server_is_killed(
    fresh_server: ServerProcess, ac: NodeClient
) -> None:
    """SIGKILL the server, start it again on the same port: the official
    client notices by itself (stale detection, 6-18 s), reconnects,
    re-subscribes everything, and receives a broadcast sent afterwards."""
    server = fresh_server
    room, topic = unique("room"), unique("topic")
    with trio.fail_after(45):
        await connect(ac, server, user="bob")
        await subscribe(ac, "chat", "ChatChannel", room=room)
        await subscribe(ac, "echo", "EchoChannel", topic=topic)
        await subscribed_rooms(ac, "bob", {"chat": room})
        await ac.expect({"event": "connected", "key": "echo"})
        first_pid = (await server.stats())["pid"]

        server.kill()
        lost = await ac.expect({"event": "disconnected", "key": "chat"})
        assert lost["willAttemptReconnect"] is True
        server.start()
        await server.wait_ready()
        assert (await server.stats())["pid"] != first_pid

        again = await ac.expect({"event": "connected", "key": "chat"}, timeout=40)
        also = await ac.expect({"event": "connected", "key": "echo"}, timeout=5)
        # The client flags the first confirmation after a reconnect.
        assert again["reconnected"] or also["reconnected"]
        welcome = await ac.expect(received("chat", {"welcome": room, "user": "bob"}))
        assert position(ac, welcome) < position(ac, again)

        assert await server.broadcast(f"chat:{room}", {"news": "after restart"}) == 1
        assert await server.broadcast(f"echo:{topic}", {"news": "echo after"}) == 1
        await ac.expect(received("chat", {"news": "after restart"}))
        await ac.expect(received("echo", {"news": "echo after"}))
        await perform(ac, "chat", "speak", message="back")
        await ac.expect(received("chat", {"message": "back", "room": room}))
    assert_client_healthy(ac, sockets=2)
