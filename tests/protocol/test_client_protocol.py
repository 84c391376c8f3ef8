"""The client's protocol machine without an event loop: frames in, events
out. Server frames come from the server's own encoders and client frames
go through the server's own parser, so both sides agree on the wire."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

from trio_cable.protocol import client as client_protocol
from trio_cable.protocol import codec
from trio_cable.protocol.client import (
    OFFERED_SUBPROTOCOLS,
    ClientProtocol,
    Confirmed,
    DisconnectRequested,
    ErrorReported,
    InvalidFrame,
    Ping,
    Received,
    Rejected,
    Status,
    Welcome,
    make_identifier,
)

CHAT = make_identifier("ChatChannel", {"room": "général", "n": 1})


def test_identifier_is_what_the_official_client_sends() -> None:
    assert CHAT == '{"channel":"ChatChannel","room":"général","n":1}'


def test_subprotocols() -> None:
    assert OFFERED_SUBPROTOCOLS == ("actioncable-v1-json", "actioncable-unsupported")
    assert ClientProtocol.accepts("actioncable-v1-json")
    assert not ClientProtocol.accepts(None)
    assert not ClientProtocol.accepts("actioncable-unsupported")


def test_commands_parse_on_the_server_with_the_identifier_intact() -> None:
    proto = ClientProtocol()
    state = proto.add(CHAT)
    (subscribe,) = proto.subscribes_due(now=0.0)
    parsed = codec.parse_frame(subscribe)
    assert parsed == codec.Subscribe(CHAT, "ChatChannel", {"room": "général", "n": 1})
    message = codec.parse_frame(proto.encode_message(state, {"action": "speak"}))
    assert message == codec.Message(CHAT, "speak", {"action": "speak"})
    assert json.loads(json.loads(proto.encode_message(state, {"x": 1}))["data"]) == {
        "x": 1
    }
    assert codec.parse_frame(proto.remove(state) or "") == codec.Unsubscribe(CHAT)


def test_identifier_is_matched_as_a_string_never_reserialised() -> None:
    proto = ClientProtocol()
    sorted_keys = '{"room":"a","channel":"Chat"}'  # another client's key order
    proto.add(sorted_keys)
    proto.subscribes_due(0.0)
    same_object = '{"channel":"Chat","room":"a"}'
    assert proto.receive_frame(codec.encode_confirm(same_object)) is None
    assert proto.receive_frame(codec.encode_confirm(sorted_keys)) == Confirmed(
        sorted_keys, reconnected=False
    )


def test_confirm_once_per_connection_then_resubscribe() -> None:
    proto = ClientProtocol()
    state = proto.add(CHAT)
    assert proto.receive_frame(codec.encode_welcome()) == Welcome()
    assert state.waiting
    proto.subscribes_due(0.0)
    assert proto.receive_frame(codec.encode_confirm(CHAT)) == Confirmed(CHAT, False)
    assert state.status is Status.CONFIRMED
    assert proto.receive_frame(codec.encode_confirm(CHAT)) is None  # duplicate
    assert proto.connection_lost() == [state]
    assert state.status is Status.PENDING
    proto.receive_frame(codec.encode_welcome())
    assert proto.subscribes_due(100.0) == [
        json.dumps(
            {"command": "subscribe", "identifier": CHAT},
            separators=(",", ":"),
            ensure_ascii=False,
        )
    ]
    assert proto.receive_frame(codec.encode_confirm(CHAT)) == Confirmed(CHAT, True)


def test_unanswered_subscribes_are_resent_every_retry() -> None:
    proto = ClientProtocol(subscribe_retry=0.5)
    assert proto.next_due() is None
    state = proto.add(CHAT)
    assert proto.next_due() == -math.inf
    assert len(proto.subscribes_due(10.0)) == 1
    assert proto.next_due() == 10.5
    assert proto.subscribes_due(10.4) == []
    assert len(proto.subscribes_due(10.5)) == 1
    proto.receive_frame(codec.encode_confirm(CHAT))
    assert proto.next_due() is None
    assert proto.subscribes_due(99.0) == []
    assert state.last_sent == 10.5
    proto.receive_frame(codec.encode_welcome())  # a new connection
    assert state.last_sent == -math.inf


def test_rejection_forgets_the_subscription() -> None:
    proto = ClientProtocol()
    state = proto.add(CHAT)
    proto.subscribes_due(0.0)
    frame = codec.encode_reject(CHAT, "unknown_channel")
    assert proto.receive_frame(frame) == Rejected(CHAT, "unknown_channel")
    assert proto.receive_frame(codec.encode_reject(CHAT)) is None  # forgotten
    assert state.status is Status.REJECTED
    assert proto.get(CHAT) is None
    assert proto.remove(state) is None  # nothing to unsubscribe
    again = proto.add(CHAT)
    assert again is not state
    assert again.waiting
    assert proto.receive_frame(codec.encode_reject(CHAT)) == Rejected(CHAT, None)


def test_unsubscribe_only_what_was_sent() -> None:
    proto = ClientProtocol()
    state = proto.add(CHAT)
    assert proto.add(CHAT) is state
    assert proto.remove(state) is None  # never sent: the server knows nothing
    state = proto.add(CHAT)
    proto.subscribes_due(0.0)
    stale = proto.add("{}")
    proto.remove(stale)
    assert proto.remove(stale) is None
    assert proto.remove(state) == '{"command":"unsubscribe","identifier":' + (
        json.dumps(CHAT, ensure_ascii=False) + "}"
    )


def test_messages_and_extension_frames_reach_their_identifier() -> None:
    proto = ClientProtocol()
    proto.add(CHAT)
    data = codec.encode_message(CHAT, codec.encode_payload({"text": "hi"}))
    assert proto.receive_frame(data) == Received(CHAT, {"text": "hi"})
    # (AnyCable's "presence" frame has a shape of its own: see
    # tests/protocol/test_presence_protocol.py.)
    extension = json.dumps({"identifier": CHAT, "type": "some_ext", "message": 1})
    assert proto.receive_frame(extension) == Received(CHAT, 1)
    other = codec.encode_message("{}", "1")
    assert proto.receive_frame(other) is None
    assert proto.receive_frame(json.dumps({"identifier": CHAT})) is None


def test_pings_disconnects_and_junk() -> None:
    proto = ClientProtocol()
    assert proto.receive_frame(codec.encode_ping(1732190000)) == Ping()
    assert proto.receive_frame(
        codec.encode_disconnect("server_restart", reconnect=True)
    ) == DisconnectRequested("server_restart", reconnect=True)
    # a missing reconnect means false, as in the official client
    assert proto.receive_frame('{"type":"disconnect"}') == DisconnectRequested(
        "unknown", reconnect=False
    )
    assert proto.receive_frame("not json") == InvalidFrame("not json")
    assert proto.receive_frame("[1]") is None
    assert proto.receive_frame('{"type":"welcome?"}') is None


def test_error_frames_name_their_subscription_only_if_ours() -> None:
    proto = ClientProtocol()
    proto.add(CHAT)
    frame = codec.encode_error("unknown_action", "no such action", CHAT)
    assert proto.receive_frame(frame) == ErrorReported(
        "unknown_action", "no such action", CHAT
    )
    about_another = codec.encode_error("not_subscribed", "no", "{}")
    assert proto.receive_frame(about_another) == ErrorReported(
        "not_subscribed", "no", None
    )
    assert proto.receive_frame(codec.encode_error("invalid_json", "x")) == (
        ErrorReported("invalid_json", "x", None)
    )


def test_lone_surrogates_are_escaped_not_crashing_the_writer() -> None:
    proto = ClientProtocol()
    state = proto.add(make_identifier("Chat", {"room": "\ud800"}))
    (frame,) = proto.subscribes_due(0.0)
    frame.encode("utf-8")  # sendable
    frame = proto.encode_message(state, {"text": "\udfff"})
    frame.encode("utf-8")


IO = {"trio", "trio_websocket", "socket", "ssl", "asyncio", "wsproto", "select"}


def _imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level names ``path`` imports, following trio_cable's own modules."""
    seen.add(path)
    package = path.parent
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.parent
            target = base.joinpath(*(node.module or "").split("."))
            module = target.with_suffix(".py")
            if not module.exists():
                module = target / "__init__.py"
            if module not in seen:
                found |= _imports(module, seen)
    return found


def test_the_machine_imports_no_io() -> None:
    path = Path(client_protocol.__file__ or "")
    assert _imports(path, set()) & IO == set()
