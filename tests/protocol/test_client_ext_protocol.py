"""The client's side of ``actioncable-v1-ext-json`` without an event loop:
server frames from the server's own encoders, client frames through the
server's own parser (:func:`~trio_cable.protocol.ext.parse_ext_frame`), so
both sides agree on the wire."""

from __future__ import annotations

import json

from trio_cable.protocol import codec
from trio_cable.protocol.client import (
    ClientProtocol,
    Confirmed,
    HistoryConfirmed,
    HistoryRejected,
    Ping,
    Received,
    Welcome,
    make_identifier,
)
from trio_cable.protocol.ext import (
    EXT_PROTOCOL,
    History,
    HistoryRequest,
    Pong,
    Position,
    StreamPosition,
    Whisper,
    encode_history_result,
    encode_welcome_ext,
    parse_ext_frame,
)

FEED = make_identifier("FeedChannel", {"room": "r"})


def broadcast(offset: int, epoch: str = "e1", n: int | None = None) -> str:
    """A positioned broadcast frame, as the server's hub writes it."""
    head = codec.encode_message(FEED, json.dumps({"n": offset if n is None else n}))
    return head[:-1] + Position("feed:r", epoch, offset).tail


def confirmed_ext_client() -> ClientProtocol:
    proto = ClientProtocol()
    assert proto.offered[0] == EXT_PROTOCOL
    assert proto.opened(EXT_PROTOCOL)
    proto.add(FEED)
    assert proto.receive_frame(encode_welcome_ext("s1"), wall=100.0) == Welcome("s1")
    (subscribe,) = proto.subscribes_due(now=0.0)
    assert parse_ext_frame(subscribe) == codec.Subscribe(
        FEED, "FeedChannel", {"room": "r"}
    )
    confirm = proto.receive_frame(codec.encode_confirm(FEED))
    assert confirm == Confirmed(FEED, reconnected=False)
    return proto


def test_positions_are_kept_and_repeats_dropped() -> None:
    proto = confirmed_ext_client()
    assert proto.receive_frame(broadcast(1)) == Received(FEED, {"n": 1})
    assert proto.receive_frame(broadcast(2)) == Received(FEED, {"n": 2})
    assert proto.receive_frame(broadcast(2)) is None  # received before
    assert proto.receive_frame(broadcast(1, epoch="e2")) == Received(FEED, {"n": 1})
    state = proto.get(FEED)
    assert state is not None
    assert state.positions.streams == {"feed:r": StreamPosition("e2", 1)}


def test_pings_are_answered_and_date_the_history_request() -> None:
    proto = confirmed_ext_client()
    assert proto.receive_frame(codec.encode_ping(1_700_000_000)) == Ping()
    (pong,) = proto.take_outgoing()
    assert parse_ext_frame(pong) == Pong()
    assert proto.since == 1_700_000_000
    assert proto.take_outgoing() == []


def test_a_resubscribe_asks_for_history_from_its_positions() -> None:
    proto = confirmed_ext_client()
    proto.receive_frame(broadcast(7))
    proto.connection_lost()
    assert proto.opened(EXT_PROTOCOL)
    assert proto.receive_frame(encode_welcome_ext("s2")) == Welcome("s2")
    (subscribe,) = proto.subscribes_due(now=1.0)
    parsed = parse_ext_frame(subscribe)
    assert isinstance(parsed, codec.Subscribe)
    # No ping yet: since the first welcome, by the client's clock.
    assert parsed.history == HistoryRequest(100, {"feed:r": StreamPosition("e1", 7)})
    assert proto.receive_frame(codec.encode_confirm(FEED)) == Confirmed(FEED, True)
    assert proto.receive_frame(
        encode_history_result(FEED, ok=False)
    ) == HistoryRejected(FEED)


def test_a_restored_session_sends_history_commands_not_subscribes() -> None:
    proto = confirmed_ext_client()
    gone = make_identifier("GoneChannel", {})
    proto.receive_frame(broadcast(3))
    proto.receive_frame(codec.encode_ping(1_700_000_000))
    proto.connection_lost()
    assert proto.sid == "s1"  # presented on the next handshake
    assert proto.opened(EXT_PROTOCOL)
    welcome = encode_welcome_ext("s2", [FEED, gone])
    assert proto.receive_frame(welcome) == Welcome("s2", (FEED,))
    unsubscribe, history = proto.take_outgoing()
    request = HistoryRequest(1_700_000_000, {"feed:r": StreamPosition("e1", 3)})
    assert parse_ext_frame(history) == History(FEED, request)
    assert parse_ext_frame(unsubscribe) == codec.Unsubscribe(gone)  # left while away
    assert proto.subscribes_due(now=5.0) == []
    state = proto.get(FEED)
    assert state is not None
    assert state.confirmed
    assert proto.receive_frame(broadcast(3)) is None
    assert proto.receive_frame(broadcast(4)) == Received(FEED, {"n": 4})
    assert proto.receive_frame(
        encode_history_result(FEED, ok=True)
    ) == HistoryConfirmed(FEED)
    assert parse_ext_frame(proto.remove(state) or "") == codec.Unsubscribe(FEED)


def test_whispers_only_on_an_extended_connection() -> None:
    proto = confirmed_ext_client()
    state = proto.get(FEED)
    assert state is not None
    frame = proto.encode_whisper(state, {"typing": True})
    assert parse_ext_frame(frame or "") == Whisper(FEED, '{"typing":true}')
    assert proto.opened(codec.PROTOCOL)
    assert proto.encode_whisper(state, {"typing": True}) is None


def test_the_plain_protocol_has_no_session_no_history_no_pong() -> None:
    proto = ClientProtocol()
    assert proto.opened(codec.PROTOCOL)
    proto.add(FEED)
    assert proto.receive_frame(encode_welcome_ext("ignored"), wall=5.0) == Welcome()
    proto.subscribes_due(now=0.0)
    proto.receive_frame(codec.encode_confirm(FEED))
    proto.receive_frame(codec.encode_ping(1))
    assert proto.take_outgoing() == []
    proto.connection_lost()
    proto.receive_frame(codec.encode_welcome())
    (subscribe,) = proto.subscribes_due(now=1.0)
    assert json.loads(subscribe) == {"command": "subscribe", "identifier": FEED}


def test_offers() -> None:
    plain = ClientProtocol(extended=False)
    assert plain.offered == ("actioncable-v1-json", "actioncable-unsupported")
    assert not plain.opened(EXT_PROTOCOL)  # never offered: not accepted
    assert ClientProtocol().offered == (
        "actioncable-v1-ext-json",
        "actioncable-v1-json",
        "actioncable-unsupported",
    )
    assert not ClientProtocol().opened(None)
