"""The extended dialect (``actioncable-v1-ext-json``) and stream history,
with no event loop: frames in, frames out, and the history store on a
clock the test moves.

The frame shapes follow ``@anycable/core``'s ``action_cable_ext``
protocol (``receive``, ``buildSubscribeRequest``, ``historyRequestFor``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import ProtocolWire
from trio_cable import HistoryPolicy
from trio_cable._errors import ProtocolError
from trio_cable._history import HistoryConfig, HistoryStore
from trio_cable.protocol import ChannelRules
from trio_cable.protocol.dialects import (
    ACTIONCABLE_V1_EXT_JSON,
    ACTIONCABLE_V1_JSON,
    choose_dialect,
)
from trio_cable.protocol.ext import (
    History,
    HistoryRequest,
    Pong,
    Position,
    StreamPosition,
    parse_ext_frame,
)
from trio_cable.protocol.server import CommandQueued, SubscriptionRequested

ROOM = json.dumps({"channel": "Room", "id": 1})
RULES = ChannelRules("Room", {"speak"}, {"subscribed"})


class Wire(ProtocolWire):
    def __init__(self) -> None:
        super().__init__(RULES, dialect=ACTIONCABLE_V1_EXT_JSON)


def test_the_best_offered_dialect_wins() -> None:
    ext, plain = "actioncable-v1-ext-json", "actioncable-v1-json"
    assert choose_dialect([plain, ext]) == (ext, ACTIONCABLE_V1_EXT_JSON)
    assert choose_dialect([ext]) == (ext, ACTIONCABLE_V1_EXT_JSON)
    assert choose_dialect([plain, "actioncable-unsupported"]) == (
        plain,
        ACTIONCABLE_V1_JSON,
    )
    # A server without the extended protocol: plain if offered, else refused.
    assert choose_dialect([ext, plain], extended=False) == (plain, ACTIONCABLE_V1_JSON)
    assert choose_dialect([ext], extended=False) == (None, None)


def test_welcome_carries_the_session_id() -> None:
    wire = Wire()
    wire.proto.welcome("abc")
    wire.proto.welcome("def", ["x", "y"])
    assert wire.frames() == [
        {"type": "welcome", "sid": "abc"},
        {"type": "welcome", "sid": "def", "restored": True, "restored_ids": ["x", "y"]},
    ]


def test_pong_is_accepted_silently() -> None:
    wire = Wire()
    assert parse_ext_frame('{"command":"pong"}') == Pong()
    assert wire.proto.receive('{"command":"pong"}', 0.0) is None
    assert wire.sent == []


def test_subscribe_and_history_commands_as_anycable_sends_them() -> None:
    since = {"since": 1700000000, "streams": {}}
    frame = {"command": "subscribe", "identifier": ROOM, "history": since}
    command = parse_ext_frame(json.dumps(frame))
    assert command.history == HistoryRequest(1700000000, {})  # type: ignore[union-attr]
    positions = {"since": 1, "streams": {"chat:1": {"epoch": "e1", "offset": 7}}}
    frame = {"command": "history", "identifier": ROOM, "history": positions}
    assert parse_ext_frame(json.dumps(frame)) == History(
        ROOM, HistoryRequest(1, {"chat:1": StreamPosition("e1", 7)})
    )


@pytest.mark.parametrize(
    "history",
    [
        [],
        {"since": "yesterday"},
        {"streams": []},
        {"streams": {"s": {"epoch": 1, "offset": 1}}},
        {"streams": {"s": {"epoch": "e", "offset": "1"}}},
    ],
)
def test_a_malformed_history_is_a_clear_error(history: Any) -> None:
    frame = {"command": "history", "identifier": ROOM, "history": history}
    with pytest.raises(ProtocolError) as info:
        parse_ext_frame(json.dumps(frame))
    assert info.value.reason == "invalid_request"
    assert info.value.identifier == ROOM


def test_presence_commands_need_a_subscription() -> None:
    """(Presence itself: tests/protocol/test_presence_protocol.py.)"""
    wire = Wire()
    frame = {"command": "join", "identifier": ROOM, "presence": {"id": "a"}}
    assert wire.proto.receive(json.dumps(frame), 0.0) is None
    [error] = wire.frames()
    assert error["type"] == "error"
    assert error["reason"] == "not_subscribed"


def subscribed(wire: Wire, history: dict[str, Any] | None) -> Any:
    frame: dict[str, Any] = {"command": "subscribe", "identifier": ROOM}
    if history is not None:
        frame["history"] = history
    event = wire.proto.receive(json.dumps(frame), 0.0)
    assert isinstance(event, SubscriptionRequested)
    return event


def test_no_gap_and_no_duplicate_at_the_hand_off() -> None:
    """Live broadcasts held back while history is read are sent after the
    replay, less those the replay carried."""
    wire = Wire()
    event = subscribed(
        wire, {"since": 0, "streams": {"s": {"epoch": "e", "offset": 1}}}
    )
    sub = event.subscription
    # Broadcast while subscribed() runs, then while the history is read.
    sub.deliver('{"n":2}', {}, Position("s", "e", 2))
    sub.confirm(hold=True)
    sub.deliver('{"n":3}', {}, Position("s", "e", 3))
    sub.deliver('{"t":1}', {})  # a stream without history
    assert [f.get("type") for f in wire.frames()] == ["confirm_subscription"]
    # The history read saw 2 and 3; 4 comes after the read but before the end.
    sub.deliver('{"n":4}', {}, Position("s", "e", 4))
    sub.history(
        [('{"n":2}', Position("s", "e", 2)), ('{"n":3}', Position("s", "e", 3))]
    )
    sub.deliver('{"n":5}', {}, Position("s", "e", 5))
    frames = wire.frames()
    assert [f.get("message") for f in frames] == [
        {"n": 2},
        {"n": 3},
        None,  # confirm_history
        {"t": 1},
        {"n": 4},
        {"n": 5},
    ]
    assert frames[2] == {"type": "confirm_history", "identifier": ROOM}
    assert frames[0] == {
        "identifier": ROOM,
        "message": {"n": 2},
        "stream_id": "s",
        "epoch": "e",
        "offset": 2,
    }


def test_history_gone_is_rejected_and_live_goes_on() -> None:
    wire = Wire()
    sub = subscribed(wire, {"since": 5}).subscription
    sub.confirm(hold=True)
    sub.deliver('{"n":9}', {}, Position("s", "e", 9))
    sub.history(None)
    frames = wire.frames()
    assert frames[1] == {"type": "reject_history", "identifier": ROOM}
    assert frames[2]["message"] == {"n": 9}


def test_a_history_command_queues_in_order_with_actions() -> None:
    wire = Wire()
    sub = subscribed(wire, None).subscription
    sub.confirm()
    frame = {"command": "history", "identifier": ROOM, "history": {"since": 1}}
    event = wire.proto.receive(json.dumps(frame), 0.0)
    assert isinstance(event, CommandQueued)
    assert isinstance(sub.next_command(), History)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(limit: int = 3, ttl: float = 60.0) -> tuple[HistoryStore, Clock]:
    clock = Clock()
    config = HistoryConfig({"h:*": None, "exact": HistoryPolicy(2, 10)})
    config = HistoryConfig(config.streams, HistoryPolicy(limit, ttl))
    return HistoryStore(config, clock=clock, epoch="E"), clock


def offsets(replay: Any) -> list[int]:
    return [position.offset for _, position in replay]


def test_only_streams_that_keep_history_get_positions() -> None:
    history, _ = store()
    assert history.append("other", "1") is None
    assert history.append("h:1", "1") == Position("h:1", "E", 1)
    assert history.append("h:1", "2") == Position("h:1", "E", 2)
    assert history.append("exact", "1") == Position("exact", "E", 1)
    assert history.retained() == 3


def test_reading_by_position() -> None:
    history, _ = store(limit=3)
    for n in range(1, 6):
        history.append("h:1", str(n))  # keeps 3, 4, 5

    def read(epoch: str, offset: int) -> Any:
        return history.read(
            ["h:1"], HistoryRequest(None, {"h:1": StreamPosition(epoch, offset)})
        )

    assert offsets(read("E", 2)) == [3, 4, 5]
    assert offsets(read("E", 4)) == [5]
    assert read("E", 5) == []  # up to date
    assert read("E", 1) is None  # 2 is gone: a gap
    assert read("E", 6) is None  # never handed out
    assert read("other-epoch", 4) is None  # a restart, or another process


def test_reading_since_a_time_and_expiry() -> None:
    history, clock = store(limit=10, ttl=60)
    history.append("h:1", "old")
    clock.now += 30
    history.append("h:1", "new")
    since = int(clock.now)
    assert offsets(history.read(["h:1"], HistoryRequest(since))) == [2]
    assert offsets(history.read(["h:1"], HistoryRequest(since - 30))) == [1, 2]
    clock.now += 31  # "old" is 61 s old
    assert offsets(history.read(["h:1"], HistoryRequest(1))) == [2]
    position = HistoryRequest(None, {"h:1": StreamPosition("E", 0)})
    assert history.read(["h:1"], position) is None  # expired: a gap


def test_a_client_ping_is_answered_and_any_frame_counts_as_alive() -> None:
    wire = Wire()
    assert wire.proto.receive('{"command":"ping"}', 7.0) is None
    assert wire.frames() == [{"type": "pong"}]
    assert wire.proto.last_seen == 7.0
    wire.proto.receive("not json", 9.0)
    assert wire.proto.last_seen == 9.0
