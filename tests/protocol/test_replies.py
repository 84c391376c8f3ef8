"""Action replies in the protocol layer, with no event loop: a ``message``
with a ``ref`` is a call; its answer, or why it was refused, comes back
tagged with that ref; a ``message`` without one gets nothing new."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ProtocolWire
from trio_cable import ProtocolError
from trio_cable.protocol import ChannelRules
from trio_cable.protocol.client import ClientProtocol, Received, Replied
from trio_cable.protocol.codec import Message, parse_frame
from trio_cable.protocol.server import CommandQueued, SubscriptionRequested

ROOM = json.dumps({"channel": "Room", "id": 1})
SUBSCRIBE = json.dumps({"command": "subscribe", "identifier": ROOM})
OTHER = json.dumps({"channel": "Room"})
RULES = ChannelRules("Room", {"add", "receive"}, {"subscribed", "transmit"})


class Wire(ProtocolWire):
    def __init__(self, **settings: Any) -> None:
        super().__init__(RULES, **settings)


def call_frame(action: str, ref: Any, identifier: str = ROOM, **data: Any) -> str:
    return json.dumps(
        {
            "command": "message",
            "identifier": identifier,
            "data": json.dumps({"action": action, **data}),
            "ref": ref,
        }
    )


def confirmed(wire: Wire) -> Any:
    event = wire.proto.receive(SUBSCRIBE, 0)
    assert isinstance(event, SubscriptionRequested)
    event.subscription.confirm()
    wire.frames()
    return event.subscription


def test_a_ref_makes_a_call_and_none_makes_a_plain_message() -> None:
    call = parse_frame(call_frame("add", 7, a=1))
    assert call == Message(ROOM, "add", {"action": "add", "a": 1}, 7)
    assert parse_frame(call_frame("add", "k-1")).ref == "k-1"
    plain = json.loads(call_frame("add", None))
    del plain["ref"]
    assert parse_frame(json.dumps(plain)).ref is None


@pytest.mark.parametrize("ref", [True, 1.5, [], {}, "x" * 65, 2**53])
def test_a_bad_ref_is_an_invalid_request(ref: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_frame(call_frame("add", ref))
    assert caught.value.reason == "invalid_request"
    assert caught.value.identifier == ROOM


def test_the_reply_is_tagged_and_follows_what_the_action_sent() -> None:
    wire = Wire()
    sub = confirmed(wire)
    event = wire.proto.receive(call_frame("add", 7, a=1), 1)
    assert isinstance(event, CommandQueued)
    command = sub.next_command()
    assert command.ref == 7
    sub.transmit('{"progress":1}')
    sub.reply(command.ref, '{"sum":3}')
    assert wire.frames() == [
        {"identifier": ROOM, "message": {"progress": 1}},
        {"identifier": ROOM, "type": "reply", "ref": 7, "result": {"sum": 3}},
    ]
    sub.reply_error("k", "invalid", "too big")
    assert wire.frames() == [
        {
            "identifier": ROOM,
            "type": "reply",
            "ref": "k",
            "error": {"reason": "invalid", "message": "too big"},
        }
    ]


def test_nothing_is_sent_for_a_subscription_that_ended() -> None:
    wire = Wire()
    sub = confirmed(wire)
    sub.leave()
    sub.reply(1, "null")
    sub.reply_error(1, "server_error", "boom")
    assert wire.sent == []


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (call_frame("nope", 3), "unknown_action"),
        (call_frame("_private", 3), "invalid_action"),
        (call_frame("subscribed", 3), "invalid_action"),
        (call_frame("add", 3, identifier=OTHER), "not_subscribed"),
    ],
)
def test_a_refused_call_is_answered_with_its_tag(frame: str, reason: str) -> None:
    wire = Wire()
    confirmed(wire)
    assert wire.proto.receive(frame, 1) is None
    (reply,) = wire.frames()
    assert reply["type"] == "reply"
    assert reply["ref"] == 3
    assert reply["error"]["reason"] == reason
    assert reply["identifier"] == json.loads(frame)["identifier"]


def test_a_refused_plain_message_keeps_the_untagged_error_frame() -> None:
    wire = Wire()
    confirmed(wire)
    plain = json.loads(call_frame("nope", None))
    del plain["ref"]
    wire.proto.receive(json.dumps(plain), 1)
    (error,) = wire.frames()
    assert error["type"] == "error"
    assert error["identifier"] == ""  # no official client's callback sees it
    assert "ref" not in error


def test_calls_queued_behind_a_rejected_subscribe_are_answered() -> None:
    wire = Wire()
    event = wire.proto.receive(SUBSCRIBE, 0)
    assert isinstance(event, SubscriptionRequested)
    wire.proto.receive(call_frame("add", 5), 0.1)
    event.subscription.reject()
    reject, reply = wire.frames()
    assert reject["type"] == "reject_subscription"
    assert reply["ref"] == 5
    assert reply["error"]["reason"] == "not_subscribed"


def test_too_many_pending_calls_are_refused_with_their_tag() -> None:
    wire = Wire(max_pending_commands=1)
    confirmed(wire)
    assert wire.proto.receive(call_frame("add", 1), 0.1) is not None
    assert wire.proto.receive(call_frame("add", 2), 0.2) is None
    (reply,) = wire.frames()
    assert (reply["ref"], reply["error"]["reason"]) == (2, "too_many_commands")


def test_the_client_protocol_reads_replies_for_its_subscriptions() -> None:
    client = ClientProtocol()
    state = client.add(ROOM)
    frame = client.encode_message(state, {"action": "add"}, 9)
    assert json.loads(frame)["ref"] == 9
    assert "ref" not in json.loads(client.encode_message(state, {"action": "add"}))
    ok = {"identifier": ROOM, "type": "reply", "ref": 9, "result": [1]}
    assert client.receive_frame(json.dumps(ok)) == Replied(ROOM, 9, [1])
    failed = {**ok, "error": {"reason": "invalid", "message": "no"}}
    del failed["result"]
    assert client.receive_frame(json.dumps(failed)) == Replied(
        ROOM, 9, error=("invalid", "no")
    )
    # not for us, or not a reply at all: nothing
    assert client.receive_frame(json.dumps({**ok, "identifier": "{}"})) is None
    assert client.receive_frame(json.dumps({**ok, "ref": None})) is None
    data = {"identifier": ROOM, "message": {"x": 1}}
    assert client.receive_frame(json.dumps(data)) == Received(ROOM, {"x": 1})


def test_a_call_dropped_by_the_rate_limit_is_answered() -> None:
    wire = Wire(commands_per_second=1.0, command_burst=2)
    confirmed(wire)  # one token
    assert wire.proto.receive(call_frame("add", 1), 0.0) is not None
    plain = json.loads(call_frame("add", None))
    del plain["ref"]
    assert wire.proto.receive(json.dumps(plain), 0.0) is None
    assert wire.proto.receive(call_frame("add", 2), 0.0) is None
    limited, call = wire.frames()
    # the plain message: one untagged error per burst, as before
    assert (limited["type"], limited["reason"]) == ("error", "rate_limited")
    # the call: its own tagged answer, so the caller need not time out
    assert (call["type"], call["ref"]) == ("reply", 2)
    assert call["error"]["reason"] == "rate_limited"
