"""The sans-I/O protocol layer, with no event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trio_cable import ProtocolError
from trio_cable.protocol.codec import (
    Message,
    Subscribe,
    Unsubscribe,
    encode_confirm,
    encode_disconnect,
    encode_error,
    encode_message,
    encode_payload,
    encode_ping,
    encode_reject,
    encode_welcome,
    parse_frame,
    select_subprotocol,
)

IDENT = '{"channel":"ChatChannel","room":"general"}'


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_subscribe_keeps_identifier_and_splits_params() -> None:
    cmd = parse_frame(frame(command="subscribe", identifier=IDENT))
    assert cmd == Subscribe(IDENT, "ChatChannel", {"room": "general"})


@pytest.mark.parametrize(
    "identifier",
    [
        '{"room":"general","channel":"ChatChannel"}',  # sorted keys
        '{ "channel" : "ChatChannel", "room" : "général" }',  # spaces, unicode
        '{"channel":"ChatChannel","room":"g\\u00e9n\\u00e9ral"}',  # escapes
        '{"channel":"ChatChannel","n":1.50,"deep":{"b":1,"a":[1,2]}}',
    ],
)
def test_identifier_is_echoed_byte_for_byte(identifier: str) -> None:
    cmd = parse_frame(frame(command="subscribe", identifier=identifier))
    assert isinstance(cmd, Subscribe)
    assert cmd.identifier == identifier
    for out in (
        encode_confirm(identifier),
        encode_reject(identifier),
        encode_message(identifier, encode_payload({"x": 1})),
    ):
        assert json.loads(out)["identifier"] == identifier


def test_message_defaults_to_receive_and_keeps_action_key() -> None:
    data = json.dumps({"message": "hi"})
    assert parse_frame(frame(command="message", identifier=IDENT, data=data)) == (
        Message(IDENT, "receive", {"message": "hi"})
    )
    data = json.dumps({"message": "hi", "action": "speak"})
    cmd = parse_frame(frame(command="message", identifier=IDENT, data=data))
    assert cmd == Message(IDENT, "speak", {"message": "hi", "action": "speak"})


def test_unsubscribe() -> None:
    cmd = parse_frame(frame(command="unsubscribe", identifier=IDENT))
    assert cmd == Unsubscribe(IDENT)


def test_bytes_frames_parse_as_utf8_json() -> None:
    raw = frame(command="unsubscribe", identifier=IDENT).encode()
    assert parse_frame(raw) == Unsubscribe(IDENT)


@pytest.mark.parametrize(
    ("text", "reason", "has_identifier"),
    [
        ("not json", "invalid_json", False),
        ("", "invalid_json", False),
        (b"\xff\xfe\x00", "invalid_json", False),
        ("[1,2]", "invalid_json", False),
        ('"subscribe"', "invalid_json", False),
        ("[" * 100_000 + "]" * 100_000, "invalid_json", False),
        (frame(identifier=IDENT), "unknown_command", True),
        (frame(command="dance", identifier=IDENT), "unknown_command", True),
        (frame(command=7, identifier=IDENT), "unknown_command", True),
        (frame(command="subscribe"), "invalid_request", False),
        (
            frame(command="subscribe", identifier={"channel": "X"}),
            "invalid_request",
            False,
        ),
        (frame(command="subscribe", identifier="{nope"), "invalid_json", True),
        (frame(command="subscribe", identifier="[1]"), "invalid_request", True),
        (frame(command="subscribe", identifier='"str"'), "invalid_request", True),
        (frame(command="subscribe", identifier="{}"), "invalid_request", True),
        (
            frame(command="subscribe", identifier='{"channel":5}'),
            "invalid_request",
            True,
        ),
        (
            frame(command="subscribe", identifier='{"channel":""}'),
            "invalid_request",
            True,
        ),
        (frame(command="message", identifier=IDENT), "invalid_request", True),
        (
            frame(command="message", identifier=IDENT, data={"a": 1}),
            "invalid_request",
            True,
        ),
        (frame(command="message", identifier=IDENT, data="{x"), "invalid_json", True),
        (frame(command="message", identifier=IDENT, data="[]"), "invalid_json", True),
        (
            frame(command="message", identifier=IDENT, data='{"action":3}'),
            "invalid_action",
            True,
        ),
    ],
)
def test_bad_frames_raise_protocol_error(
    text: str | bytes, reason: str, has_identifier: bool
) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_frame(text)
    assert info.value.reason == reason
    assert (info.value.identifier is not None) == has_identifier


def test_server_frames() -> None:
    assert json.loads(encode_welcome()) == {"type": "welcome"}
    assert json.loads(encode_ping(1732190000)) == {
        "type": "ping",
        "message": 1732190000,
    }
    assert json.loads(encode_reject(IDENT, "unknown_channel")) == {
        "identifier": IDENT,
        "type": "reject_subscription",
        "reason": "unknown_channel",
    }
    assert json.loads(encode_disconnect("unauthorized", reconnect=False)) == {
        "type": "disconnect",
        "reason": "unauthorized",
        "reconnect": False,
    }
    # reconnect is always present: the official client reads a missing one as false
    assert '"reconnect":true' in encode_disconnect("server_restart", reconnect=True)


def test_error_frame_reaches_no_subscription() -> None:
    err = json.loads(encode_error("unknown_action", "no such action", IDENT))
    # An empty identifier matches no subscription in the official client; a
    # missing one would make it throw.
    assert err["identifier"] == ""
    assert err["type"] == "error"
    assert err["about"] == IDENT


def test_payload_is_compact_unicode_json() -> None:
    assert encode_payload({"m": "é", "n": [1, 2]}) == '{"m":"é","n":[1,2]}'
    with pytest.raises(ValueError, match="Out of range"):
        encode_payload(float("nan"))


def test_payload_encoding_refuses_what_json_refuses() -> None:
    """The one encoder kept for every call (no circular-reference
    markers) still names a cycle, and fails nothing it should not."""
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        encode_payload({"a": looped})
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_payload({"a": object()})
    with pytest.raises(TypeError, match="keys must be"):
        encode_payload({(1, 2): 1})
    shared = [1]
    assert encode_payload([shared, shared]) == "[[1],[1]]"  # not a cycle
    assert encode_payload({"k": {"u": "\ud800"}}) == '{"k":{"u":"\\ud800"}}'
    assert encode_payload("s") == '"s"'


def test_subprotocol_selection() -> None:
    assert select_subprotocol(["actioncable-v1-json", "actioncable-unsupported"]) == (
        "actioncable-v1-json"
    )
    assert select_subprotocol(["actioncable-unsupported"]) is None
    assert select_subprotocol([]) is None
