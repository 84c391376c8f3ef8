"""Presence on the wire, with no event loop: the commands parsed in both
Action Cable dialects (AnyCable's shapes, ``@anycable/core``'s
``action_cable_ext`` ``join``/``leave``/``presence``), their errors, their
place in the subscription's queue, and the frames each dialect sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ProtocolWire
from trio_cable._errors import ProtocolError
from trio_cable.protocol import ChannelRules
from trio_cable.protocol.codec import Limits, Message
from trio_cable.protocol.dialects import ACTIONCABLE_V1_EXT_JSON, ACTIONCABLE_V1_JSON
from trio_cable.protocol.presence import (
    MAX_PRESENCE_ID,
    PresenceInfo,
    PresenceJoin,
    PresenceLeave,
    encode_info,
    encode_join,
    encode_leave,
    presence_frame,
)
from trio_cable.protocol.server import CommandQueued

ROOM = json.dumps({"channel": "Room", "id": 1})
RULES = ChannelRules("Room", {"speak"}, {"subscribed"})
DIALECTS = [ACTIONCABLE_V1_JSON, ACTIONCABLE_V1_EXT_JSON]


def frame(**fields: Any) -> str:
    return json.dumps({"identifier": ROOM, **fields})


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.subprotocol)
def test_the_three_commands_parse_in_both_dialects(dialect: Any) -> None:
    join = frame(command="join", presence={"id": 7, "info": {"name": "Ann"}})
    assert dialect.parse(join) == PresenceJoin(ROOM, "7", '{"name":"Ann"}')
    assert dialect.parse(frame(command="join", presence={"id": "a"})) == (
        PresenceJoin(ROOM, "a", "null")
    )
    assert dialect.parse(frame(command="leave")) == PresenceLeave(ROOM)
    assert dialect.parse(frame(command="presence", data={})) == PresenceInfo(ROOM)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"command": "join"}, "invalid_request"),
        ({"command": "join", "presence": "ann"}, "invalid_request"),
        ({"command": "join", "presence": {"id": ""}}, "invalid_request"),
        ({"command": "join", "presence": {"id": True}}, "invalid_request"),
        ({"command": "join", "presence": {"id": 1.5}}, "invalid_request"),
        (
            {"command": "join", "presence": {"id": "x" * (MAX_PRESENCE_ID + 1)}},
            "invalid_request",
        ),
        (
            {"command": "join", "presence": {"id": "a", "info": [[[[1]]]]}},
            "json_too_deep",
        ),
    ],
)
def test_malformed_joins_are_clear_errors(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        ACTIONCABLE_V1_EXT_JSON.parse(frame(**fields), Limits(max_json_depth=3))
    assert info.value.reason == reason
    assert info.value.identifier == ROOM


def test_a_presence_command_needs_a_string_identifier() -> None:
    text = json.dumps({"command": "leave", "identifier": {"channel": "Room"}})
    with pytest.raises(ProtocolError) as info:
        ACTIONCABLE_V1_JSON.parse(text)
    assert info.value.reason == "invalid_request"


def test_presence_commands_wait_in_order_with_the_actions() -> None:
    wire = ProtocolWire(RULES, dialect=ACTIONCABLE_V1_EXT_JSON)
    wire.proto.receive(frame(command="subscribe"), 0.0)
    sub = wire.proto.subscriptions[ROOM]
    sub.confirm()
    speak = frame(command="message", data=json.dumps({"action": "speak"}))
    for text in (speak, frame(command="join", presence={"id": "a"}), speak):
        assert isinstance(wire.proto.receive(text, 0.0), CommandQueued)
    kinds = [type(sub.next_command()) for _ in range(3)]
    assert kinds == [Message, PresenceJoin, Message]


def test_each_dialect_gets_its_own_frame() -> None:
    event = encode_join("a", '{"n":1}')
    ext = presence_frame(True, "unused", ROOM, event)
    assert json.loads(ext) == {
        "type": "presence",
        "identifier": ROOM,
        "message": {"type": "join", "id": "a", "info": {"n": 1}},
    }
    prefix = ACTIONCABLE_V1_JSON.message_prefix(ROOM)
    plain = presence_frame(False, prefix, ROOM, encode_leave("a"))
    assert json.loads(plain) == {
        "identifier": ROOM,
        "message": {"presence": {"type": "leave", "id": "a"}},
    }
    assert json.loads(encode_info({"a": "1", "b": "null"})) == {
        "type": "info",
        "total": 2,
        "records": [{"id": "a", "info": 1}, {"id": "b", "info": None}],
    }


def test_events_reach_a_subscription_only_once_confirmed() -> None:
    wire = ProtocolWire(RULES)
    wire.proto.receive(frame(command="subscribe"), 0.0)
    sub = wire.proto.subscriptions[ROOM]
    sub.presence(encode_leave("early"))
    assert wire.frames() == []
    sub.confirm()
    sub.presence(encode_leave("a"))
    assert wire.frames()[-1] == {
        "identifier": ROOM,
        "message": {"presence": {"type": "leave", "id": "a"}},
    }


def test_the_client_reads_anycables_presence_frame_as_the_plain_shape() -> None:
    """The client protocol turns the extended dialect's presence frame into
    the message plain Action Cable carries (one shape for the client)."""
    from trio_cable.protocol.client import ClientProtocol, Received

    client = ClientProtocol()
    client.add(ROOM)
    event = client.receive_frame(
        json.dumps(
            {
                "type": "presence",
                "identifier": ROOM,
                "message": {"type": "leave", "id": "a"},
            }
        )
    )
    assert event == Received(ROOM, {"presence": {"type": "leave", "id": "a"}})
