"""The interop flows again, in process: chat_app's cable through
``cable_test_client`` (no network, no server process, no Node).

Same application, same expectations as ``test_official_client.py``, so a
failure there that does not show here points at a transport or the
client, and the other way round.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.apps import chat_app
from tests.apps.chat_app import cable
from tests.interop.protocol_cases import bad_frames
from trio_cable import ConnectionRejected
from trio_cable.testing import TestClient, cable_test_client, identifier_for

Frame = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def about(identifier: str) -> Callable[[Frame], bool]:
    return lambda f: f.get("identifier") == identifier


async def subscribe_room(ws: TestClient, room: str, user: str | None) -> str:
    """Subscribe to a room; the welcome must come before the confirmation."""
    identifier = identifier_for("ChatChannel", room=room)
    await ws.send_command("subscribe", identifier)
    welcome = await ws.receive_matching(about(identifier))
    assert welcome == {
        "identifier": identifier,
        "message": {"welcome": room, "user": user},
    }
    confirm = await ws.receive_matching(about(identifier))
    assert confirm == {"identifier": identifier, "type": "confirm_subscription"}
    return identifier


async def test_channels_multiplexed_on_one_connection() -> None:
    r1, r2, topic = unique("r1"), unique("r2"), unique("topic")
    with trio.fail_after(5):
        async with cable_test_client(cable, query={"user": "alice"}) as ws:
            id1 = await subscribe_room(ws, r1, "alice")
            id2 = await subscribe_room(ws, r2, "alice")
            confirm = await ws.subscribe("EchoChannel", topic=topic)
            assert confirm["type"] == "confirm_subscription"
            id3 = confirm["identifier"]
            assert set(ws.connection.subscriptions) == {id1, id2, id3}

            await ws.perform("ChatChannel", "whoami", room=r1)
            assert await ws.receive() == {
                "identifier": id1,
                "message": {"user": "alice"},
            }

            # One socket, in order: r1's broadcast, then r2's, nothing crossed.
            await ws.perform("ChatChannel", "speak", {"message": "one"}, room=r1)
            await ws.perform("ChatChannel", "speak", {"message": "two"}, room=r2)
            assert await ws.receive() == {
                "identifier": id1,
                "message": {"message": "one", "room": r1},
            }
            assert await ws.receive() == {
                "identifier": id2,
                "message": {"message": "two", "room": r2},
            }

            await ws.send_command("message", id3, {"text": "ping"})
            assert await ws.receive() == {
                "identifier": id3,
                "message": {"echo": {"text": "ping"}},
            }

            assert await cable.broadcast(f"chat:{r2}", {"news": "outside"}) == 1
            assert await cable.broadcast(f"echo:{topic}", {"news": "echo"}) == 1
            assert await ws.receive() == {
                "identifier": id2,
                "message": {"news": "outside"},
            }
            assert await ws.receive() == {
                "identifier": id3,
                "message": {"news": "echo"},
            }


async def test_rejected_and_unknown_channels() -> None:
    room, tag = unique("room"), unique("tag")
    with trio.fail_after(5):
        async with cable_test_client(cable) as ws:
            refused = await ws.subscribe("RejectingChannel", tag=tag)
            assert refused == {
                "identifier": identifier_for("RejectingChannel", tag=tag),
                "type": "reject_subscription",
            }
            unknown = await ws.subscribe("NoSuchChannel", room=room)
            assert unknown["type"] == "reject_subscription"
            assert unknown["reason"] == "unknown_channel"
            assert ws.connection.subscriptions == {}

            # The transmit before reject() was discarded: the next frame
            # is the answer to this subscribe.
            identifier = await subscribe_room(ws, room, None)
            assert set(ws.connection.subscriptions) == {identifier}


async def test_unsubscribe_stops_delivery() -> None:
    ra, rb = unique("ra"), unique("rb")
    with trio.fail_after(5):
        async with cable_test_client(cable) as ws:
            id_a = await subscribe_room(ws, ra, None)
            id_b = await subscribe_room(ws, rb, None)
            await ws.unsubscribe("ChatChannel", room=ra)
            # Commands on one socket run in order: this reply comes after
            # the unsubscribe was handled.
            await ws.perform("ChatChannel", "speak", {"message": "after"}, room=rb)
            assert (await ws.receive())["identifier"] == id_b

            assert await cable.broadcast(f"chat:{ra}", {"news": "nobody"}) == 0
            assert await cable.broadcast(f"chat:{rb}", {"news": "b"}) == 1
            assert await ws.receive() == {"identifier": id_b, "message": {"news": "b"}}
            await trio.testing.wait_all_tasks_blocked()
            assert chat_app.events[f"unsubscribed {id_a}"] == 1
            assert f"unsubscribed {id_b}" not in chat_app.events
            assert set(ws.connection.subscriptions) == {id_b}
        # Leaving the block ran the other subscription's unsubscribed().
        assert chat_app.events[f"unsubscribed {id_b}"] == 1


async def test_connect_hook_rejection() -> None:
    before = chat_app.events["connection_rejected"]
    with trio.fail_after(5), pytest.raises(ConnectionRejected) as caught:
        async with cable_test_client(cable, query={"user": "intruder"}):
            pytest.fail("the connection was accepted")
    assert caught.value.reason == "unauthorized"
    assert caught.value.reconnect is False
    assert chat_app.events["connection_rejected"] == before + 1
    assert cable.connections == frozenset()


async def test_protocol_errors_leave_the_connection_usable() -> None:
    ra, rb = unique("ra"), unique("rb")
    with trio.fail_after(5):
        async with cable_test_client(cable) as ws:
            id_a = await subscribe_room(ws, ra, None)
            id_b = await subscribe_room(ws, rb, None)
            for case in bad_frames(id_a):
                await ws.send_raw(case.text)
                error = await ws.receive()
                assert error["type"] == "error", case.name
                assert error["reason"] == case.reason, (case.name, error)
                assert error["identifier"] == "", case.name

            await ws.perform("ChatChannel", "speak", {"message": "a"}, room=ra)
            await ws.perform("ChatChannel", "speak", {"message": "b"}, room=rb)
            assert await ws.receive() == {
                "identifier": id_a,
                "message": {"message": "a", "room": ra},
            }
            assert await ws.receive() == {
                "identifier": id_b,
                "message": {"message": "b", "room": rb},
            }
            assert set(ws.connection.subscriptions) == {id_a, id_b}
            assert chat_app.events[f"subscribed {id_a}"] == 1
