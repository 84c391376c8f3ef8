"""Restored subscriptions and the session store, with no event loop (the
store's methods are async, for a store across processes, but never wait).

A restored session's subscriptions are confirmed with no frame (the
client learns of them from ``welcome``'s ``restored_ids``), and live
broadcasts wait for the client's ``history`` request so that the replay
and the live stream hand off with no gap and no duplicate; a client that
asks nothing gets them at :meth:`ServerProtocol.release_restored`.
"""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import ProtocolWire
from trio_cable._sessions import MemorySessionStore, Session, restore_sid
from trio_cable.protocol import ChannelRules
from trio_cable.protocol.dialects import ACTIONCABLE_V1_EXT_JSON
from trio_cable.protocol.ext import History, Position
from trio_cable.protocol.server import CommandQueued
from trio_cable.testing import _request

ROOM = json.dumps({"channel": "Room", "id": 1})
RULES = ChannelRules("Room", {"speak"}, {"subscribed"})


class Wire(ProtocolWire):
    def __init__(self) -> None:
        super().__init__(RULES, dialect=ACTIONCABLE_V1_EXT_JSON)


def test_a_restored_welcome_and_no_confirmation() -> None:
    wire = Wire()
    wire.proto.restore(ROOM, RULES)
    wire.proto.welcome("new", [ROOM])
    assert wire.frames() == [
        {"type": "welcome", "sid": "new", "restored": True, "restored_ids": [ROOM]}
    ]
    assert list(wire.proto.subscriptions) == [ROOM]


def test_live_broadcasts_wait_for_the_history_request() -> None:
    wire = Wire()
    sub = wire.proto.restore(ROOM, RULES)
    sub.deliver('{"n":2}', {}, Position("s", "e", 2))
    sub.deliver('{"n":3}', {}, Position("s", "e", 3))
    assert wire.frames() == []
    frame = {
        "command": "history",
        "identifier": ROOM,
        "history": {"streams": {"s": {"epoch": "e", "offset": 0}}},
    }
    event = wire.proto.receive(json.dumps(frame), 0.0)
    assert isinstance(event, CommandQueued)
    assert isinstance(sub.next_command(), History)
    # The history read: 1 (missed while away), 2 (arrived while held).
    sub.hold()
    sub.history(
        [('{"n":1}', Position("s", "e", 1)), ('{"n":2}', Position("s", "e", 2))]
    )
    # Asked for: a later release lets nothing through twice.
    wire.proto.release_restored()
    sub.deliver('{"n":4}', {}, Position("s", "e", 4))
    assert [f.get("message") for f in wire.frames()] == [
        {"n": 1},
        {"n": 2},
        None,  # confirm_history
        {"n": 3},
        {"n": 4},
    ]


def test_a_client_that_asks_nothing_is_released() -> None:
    wire = Wire()
    sub = wire.proto.restore(ROOM, RULES)
    sub.deliver('{"n":1}', {}, Position("s", "e", 1))
    sub.deliver('{"t":1}', {})
    wire.proto.release_restored()
    sub.deliver('{"n":2}', {}, Position("s", "e", 2))
    frames = wire.frames()
    assert [f["message"] for f in frames] == [{"n": 1}, {"t": 1}, {"n": 2}]
    assert frames[0]["offset"] == 1


def test_a_restored_subscription_takes_actions_and_unsubscribe() -> None:
    wire = Wire()
    sub = wire.proto.restore(ROOM, RULES)
    message = {"command": "message", "identifier": ROOM, "data": '{"action":"speak"}'}
    assert isinstance(wire.proto.receive(json.dumps(message), 0.0), CommandQueued)
    unsubscribe = {"command": "unsubscribe", "identifier": ROOM}
    wire.proto.receive(json.dumps(unsubscribe), 0.0)
    assert sub.closed
    wire.proto.release_restored()  # gone: nothing sent for it
    assert wire.frames() == []


async def test_the_memory_store_takes_once_expires_in_order_and_is_bounded() -> None:
    store = MemorySessionStore(max_sessions=2)
    a, b, c = Session("a"), Session("b"), Session("c")
    assert await store.put("a", a, 10.0) == []
    assert await store.put("b", b, 20.0) == []
    assert store.next_expiry() == 10.0
    assert await store.put("c", c, 30.0) == [a]  # the oldest gives way
    assert await store.take("b", 0.0) is b
    assert await store.take("b", 0.0) is None  # once
    assert await store.take("c", 30.0) is None  # expired: left for due()
    assert await store.due(29.0) == []
    assert await store.due(30.0) == [c]
    assert len(store) == 0
    assert store.next_expiry() == float("inf")
    assert await MemorySessionStore(max_sessions=0).put("x", a, 1.0) == [a]


def test_the_sid_comes_from_the_header_or_the_query() -> None:
    def request(headers: dict[str, str], query: dict[str, str]) -> Any:
        return _request("/cable", headers, None, query, [])

    assert restore_sid(request({}, {"sid": "q"})) == "q"
    assert restore_sid(request({"X-AnyCable-Restore-Sid": "h"}, {"sid": "q"})) == "h"
    assert restore_sid(request({}, {"sid": ""})) is None
    assert restore_sid(request({}, {})) is None
