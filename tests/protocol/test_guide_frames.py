"""``proper-channels-v1-json``, the reference Channels guide's frames, with
no event loop: the same ServerProtocol, only the frames differ."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ProtocolWire
from trio_cable import ProtocolError
from trio_cable.protocol import ChannelRules, ProtocolSettings, ServerProtocol
from trio_cable.protocol.codec import Message, Subscribe, Unsubscribe
from trio_cable.protocol.dialects import (
    ACTIONCABLE_V1_JSON,
    PROPER_CHANNELS_V1_JSON,
    choose_dialect,
)
from trio_cable.protocol.guide import guide_identifier
from trio_cable.protocol.server import CommandQueued, SubscriptionRequested

GUIDE = PROPER_CHANNELS_V1_JSON
RULES = ChannelRules("ChatChannel", {"speak", "receive"}, {"subscribed"})
CHAT = {"channel": "ChatChannel", "params": {"room": "general"}}
BAD = "invalid_request"


def frame(command: str, **fields: Any) -> str:
    return json.dumps({"command": command, **CHAT, **fields})


class Wire(ProtocolWire):
    def __init__(self) -> None:
        super().__init__(RULES, dialect=GUIDE)


def test_negotiated_by_its_subprotocol() -> None:
    assert GUIDE.subprotocol == "proper-channels-v1-json"
    assert choose_dialect(["proper-channels-v1-json"]) == (
        "proper-channels-v1-json",
        GUIDE,
    )
    # the server's ranking decides, whatever the client's order: Action
    # Cable's dialects before the guide's (DIALECTS is best first)
    offer = ["actioncable-v1-json", "proper-channels-v1-json"]
    assert choose_dialect(offer)[1] is ACTIONCABLE_V1_JSON
    assert choose_dialect(offer[::-1])[1] is ACTIONCABLE_V1_JSON


def test_commands_are_the_same_commands() -> None:
    ident = guide_identifier("ChatChannel", {"room": "general"})
    assert GUIDE.parse(frame("subscribe")) == Subscribe(
        ident, "ChatChannel", {"room": "general"}
    )
    assert GUIDE.parse(frame("unsubscribe")) == Unsubscribe(ident)
    speak = frame("message", action="speak", data={"message": "hi"})
    assert GUIDE.parse(speak) == Message(
        ident, "speak", {"message": "hi", "action": "speak"}
    )
    # no action: the receive action; no params: none
    assert GUIDE.parse(frame("message")).action == "receive"
    bare = GUIDE.parse(json.dumps({"command": "subscribe", "channel": "Inbox"}))
    assert bare == Subscribe('{"channel":"Inbox"}', "Inbox", {})
    call = GUIDE.parse(frame("message", action="speak", ref=4))
    assert isinstance(call, Message)
    assert call.ref == 4


def test_params_in_any_key_order_name_one_subscription() -> None:
    one = GUIDE.parse(frame("subscribe", params={"a": 1, "b": {"y": 1, "x": 2}}))
    two = GUIDE.parse(frame("subscribe", params={"b": {"x": 2, "y": 1}, "a": 1}))
    assert one.identifier == two.identifier


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nope", "invalid_json"),
        ("[]", "invalid_json"),
        ('{"command":"dance","channel":"C"}', "unknown_command"),
        ('{"command":"subscribe"}', "invalid_request"),
        ('{"command":"subscribe","channel":""}', "invalid_request"),
        ('{"command":"subscribe","channel":"C","params":[1]}', "invalid_request"),
        ('{"command":"subscribe","channel":"C","params":{"channel":"D"}}', BAD),
        ('{"command":"message","channel":"C","action":7}', "invalid_action"),
        ('{"command":"message","channel":"C","data":"text"}', "invalid_request"),
        ('{"command":"message","channel":"C","ref":[]}', "invalid_request"),
        (frame("subscribe", params={"x": "x" * 2000}), "identifier_too_large"),
    ],
)
def test_bad_frames_are_protocol_errors(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        GUIDE.parse(text)
    assert caught.value.reason == reason


def test_the_server_frames_of_the_guide() -> None:
    wire = Wire()
    wire.proto.welcome()
    assert wire.sent == []  # the guide has no welcome
    event = wire.proto.receive(frame("subscribe"), 0)
    assert isinstance(event, SubscriptionRequested)
    sub = event.subscription
    sub.transmit('{"status":"joined"}')
    sub.confirm()
    sub.deliver('{"message":"hi"}', {})
    assert wire.frames() == [
        {"type": "message", **CHAT, "data": {"status": "joined"}},
        {"type": "confirm_subscription", **CHAT},
        {"type": "message", **CHAT, "data": {"message": "hi"}},
    ]
    event = wire.proto.receive(frame("message", action="speak", ref="r1"), 1)
    assert isinstance(event, CommandQueued)
    command = sub.next_command()
    assert command is not None
    sub.reply(command.ref, '{"ok":true}')
    sub.reply_error(2, "invalid", "no")
    assert wire.frames() == [
        {"type": "reply", **CHAT, "ref": "r1", "result": {"ok": True}},
        {
            "type": "reply",
            **CHAT,
            "ref": 2,
            "error": {"reason": "invalid", "message": "no"},
        },
    ]


def test_refusals_in_the_guides_words() -> None:
    wire = Wire()
    wire.proto.receive(json.dumps({"command": "subscribe", "channel": "Nope"}), 0)
    wire.proto.receive(frame("message", action="speak"), 0.1)
    wire.proto.receive("{", 0.2)
    reject, not_subscribed, invalid = wire.frames()
    assert reject == {
        "type": "reject_subscription",
        "channel": "Nope",
        "params": {},
        "reason": "unknown_channel",
        "message": "no channel 'Nope' (channels: ChatChannel)",
    }
    assert not_subscribed["type"] == "error"
    assert not_subscribed["reason"] == "not_subscribed"
    assert (not_subscribed["channel"], not_subscribed["params"]) == (
        "ChatChannel",
        {"room": "general"},
    )
    assert invalid["reason"] == "invalid_json"
    assert "channel" not in invalid
    # a subscription rejected by the channel has no reason
    event = wire.proto.receive(frame("subscribe"), 1)
    assert isinstance(event, SubscriptionRequested)
    event.subscription.reject()
    assert wire.frames() == [{"type": "reject_subscription", **CHAT}]


def test_two_dialects_share_a_broadcast_not_its_frames() -> None:
    guide, cable = Wire(), Wire()
    cable.proto = ServerProtocol(
        ACTIONCABLE_V1_JSON, ProtocolSettings(), send=cable.sent.append, host=cable
    )
    ident = json.dumps({"channel": "ChatChannel", "room": "general"}).replace(" ", "")
    assert ident == guide_identifier("ChatChannel", {"room": "general"})
    subs = []
    for wire, text in (
        (guide, frame("subscribe")),
        (cable, json.dumps({"command": "subscribe", "identifier": ident})),
    ):
        event = wire.proto.receive(text, 0)
        assert isinstance(event, SubscriptionRequested)
        event.subscription.confirm()
        wire.frames()
        subs.append(event.subscription)
    frames: dict[str, str] = {}  # one broadcast's frame cache
    for sub in subs:
        sub.deliver('{"n":1}', frames)
    assert guide.frames() == [{"type": "message", **CHAT, "data": {"n": 1}}]
    assert cable.frames() == [{"identifier": ident, "message": {"n": 1}}]
