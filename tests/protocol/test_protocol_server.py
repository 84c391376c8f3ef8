"""The server protocol machine with no event loop: frames in, frames out.

Each test feeds client frames to a :class:`ServerProtocol` with explicit
times and reads the server frames it emitted and the work it handed to
the channel layer (the style of wsproto's ``test_connection.py``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

import trio_cable.protocol
from tests.helpers import ProtocolWire
from trio_cable.protocol import ChannelRules
from trio_cable.protocol.dialects import ACTIONCABLE_V1_JSON, choose_dialect
from trio_cable.protocol.server import (
    CONFIRMED,
    LEAVING,
    PENDING,
    REJECTED,
    CommandQueued,
    SubscriptionRequested,
    UnsubscribeRequested,
)

ROOM = json.dumps({"channel": "Room", "id": 1})
RULES = ChannelRules("Room", {"speak", "receive"}, {"subscribed", "transmit"})


class Wire(ProtocolWire):
    """A ServerProtocol and every frame it sent, decoded."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(RULES, **settings)

    def command(self, command: str, identifier: str = ROOM, **data: Any) -> str:
        frame: dict[str, Any] = {"command": command, "identifier": identifier}
        if data:
            frame["data"] = json.dumps(data)
        return json.dumps(frame)

    def subscribe(self, now: float = 0.0) -> Any:
        event = self.proto.receive(self.command("subscribe"), now)
        assert isinstance(event, SubscriptionRequested)
        return event.subscription


def test_welcome_and_the_dialect_chosen_by_subprotocol() -> None:
    wire = Wire()
    wire.proto.welcome()
    assert wire.frames() == [{"type": "welcome"}]
    assert choose_dialect(["actioncable-v1-json", "actioncable-unsupported"]) == (
        "actioncable-v1-json",
        ACTIONCABLE_V1_JSON,
    )
    # Only what we do not speak: refused. Nothing offered: plain, unselected.
    assert choose_dialect(["other"]) == (None, None)
    assert choose_dialect([]) == (None, ACTIONCABLE_V1_JSON)


def test_subscribe_holds_transmits_until_confirmed_then_sends_early_broadcasts() -> (
    None
):
    wire = Wire()
    sub = wire.subscribe()
    assert sub.state == PENDING
    assert wire.frames() == []
    sub.transmit('{"held":1}')
    sub.deliver('{"early":1}', {})
    assert wire.frames() == []
    sub.confirm()
    assert sub.state == CONFIRMED
    assert wire.frames() == [
        {"identifier": ROOM, "message": {"held": 1}},
        {"identifier": ROOM, "type": "confirm_subscription"},
        {"identifier": ROOM, "message": {"early": 1}},
    ]
    frames: dict[str, str] = {}
    sub.deliver('{"n":2}', frames)
    assert wire.sent == [frames[sub.prefix]]  # shared by its head
    assert wire.frames() == [{"identifier": ROOM, "message": {"n": 2}}]


def test_reject_discards_held_frames_and_answers_what_queued_behind() -> None:
    wire = Wire()
    sub = wire.subscribe()
    sub.transmit('{"held":1}')
    queued = wire.proto.receive(wire.command("message", action="speak"), 0.0)
    assert isinstance(queued, CommandQueued)
    sub.reject()
    assert sub.state == REJECTED
    frames = wire.frames()
    assert frames[0] == {"identifier": ROOM, "type": "reject_subscription"}
    assert frames[1]["reason"] == "not_subscribed"
    assert wire.proto.subscriptions == {}


def test_duplicate_subscribe_gets_no_frame_and_one_confirmation() -> None:
    """As Rails and anycable-go: a duplicate of a pending or confirmed
    subscription is answered by nothing but the subscription's single
    confirmation, and makes no second subscription."""
    wire = Wire()
    sub = wire.subscribe()
    assert wire.proto.receive(wire.command("subscribe"), 0.0) is None  # pending
    assert wire.frames() == []
    sub.confirm()
    assert wire.proto.receive(wire.command("subscribe"), 0.0) is None  # confirmed
    assert sub.next_command() is None
    assert [frame["type"] for frame in wire.frames()] == ["confirm_subscription"]
    assert wire.proto.subscriptions == {ROOM: sub}


def test_duplicate_subscribe_of_a_rejected_one_is_a_new_subscription() -> None:
    """A rejected subscription is forgotten: subscribing again asks the
    channel again (and is answered once more), as Rails does."""
    wire = Wire()
    first = wire.subscribe()
    assert wire.proto.receive(wire.command("subscribe"), 0.0) is None
    first.reject()
    second = wire.subscribe()
    assert second is not first
    second.reject()
    types = [frame["type"] for frame in wire.frames()]
    assert types == ["reject_subscription", "reject_subscription"]


def test_actions_are_queued_in_order_and_refused_by_the_rules() -> None:
    wire = Wire(max_pending_commands=2)
    sub = wire.subscribe()
    sub.confirm()
    wire.frames()
    for action in ("_private", "subscribed", "transmit", "nope"):
        assert wire.proto.receive(wire.command("message", action=action), 0.0) is None
    reasons = [frame["reason"] for frame in wire.frames()]
    assert reasons == [
        "invalid_action",
        "invalid_action",
        "invalid_action",
        "unknown_action",
    ]
    for n in range(3):
        wire.proto.receive(wire.command("message", action="speak", n=n), 0.0)
    assert [frame["reason"] for frame in wire.frames()] == ["too_many_commands"]
    first, second = sub.next_command(), sub.next_command()
    assert (first.data["n"], second.data["n"]) == (0, 1)
    assert sub.next_command() is None
    plain = wire.proto.receive(wire.command("message", text="hi"), 0.0)
    assert isinstance(plain, CommandQueued)
    assert sub.next_command().action == "receive"


def test_unsubscribe_leaves_and_later_messages_are_not_subscribed() -> None:
    wire = Wire()
    sub = wire.subscribe()
    sub.confirm()
    wire.frames()
    event = wire.proto.receive(wire.command("unsubscribe"), 0.0)
    assert isinstance(event, UnsubscribeRequested)
    assert sub.state == LEAVING
    sub.deliver('{"n":1}', {})
    sub.transmit('{"n":2}')
    assert wire.frames() == []
    wire.proto.receive(wire.command("message", action="speak"), 0.0)
    wire.proto.receive(wire.command("unsubscribe"), 0.0)
    assert [f["reason"] for f in wire.frames()] == ["not_subscribed"] * 2


def test_unknown_channel_and_subscription_limit_are_rejected_with_a_reason() -> None:
    wire = Wire(max_subscriptions=1)
    other = json.dumps({"channel": "Nope"})
    assert wire.proto.receive(wire.command("subscribe", other), 0.0) is None
    wire.subscribe()
    second = json.dumps({"channel": "Room", "id": 2})
    assert wire.proto.receive(wire.command("subscribe", second), 0.0) is None
    assert [f["reason"] for f in wire.frames()] == [
        "unknown_channel",
        "too_many_subscriptions",
    ]


def test_bad_frames_are_answered_and_the_connection_stays_usable() -> None:
    wire = Wire(max_frame_bytes=100)
    wire.proto.receive("{nope", 0.0)
    wire.proto.receive(b"binary", 0.0)
    wire.proto.receive("x" * 101, 0.0)
    wire.proto.receive('{"command":"dance","identifier":"{}"}', 0.0)
    assert [f["reason"] for f in wire.frames()] == [
        "invalid_json",
        "invalid_request",
        "frame_too_large",
        "unknown_command",
    ]
    assert wire.counts == ["frame_too_large"]
    wire.subscribe()


def test_rate_bucket_refills_with_the_time_passed_in() -> None:
    wire = Wire(commands_per_second=10, command_burst=3)
    sub = wire.subscribe(now=0.0)  # one token
    sub.confirm()
    wire.frames()
    speak = wire.command("message", action="speak")
    assert wire.proto.receive(speak, 0.0) is not None
    assert wire.proto.receive(speak, 0.0) is not None
    assert wire.proto.receive(speak, 0.0) is None  # the burst is spent
    assert wire.proto.receive(speak, 0.05) is None  # half a token later
    assert [f["reason"] for f in wire.frames()] == ["rate_limited"]  # once a burst
    assert wire.counts == ["rate_limited", "rate_limited"]
    assert wire.proto.receive(speak, 0.1) is not None  # a whole token
    assert wire.proto.receive(speak, 10.0) is not None  # refilled, capped
    for _ in range(2):
        assert wire.proto.receive(speak, 10.0) is not None
    assert wire.proto.receive(speak, 10.0) is None


def test_nothing_under_protocol_imports_an_event_loop_or_io() -> None:
    forbidden = {"trio", "anyio", "asyncio", "socket", "ssl", "wsproto", "redis"}
    forbidden |= {"trio_websocket", "hypercorn", "select", "selectors"}
    root = Path(trio_cable.protocol.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, (path.name, name)


@pytest.mark.parametrize("state", [REJECTED, LEAVING])
def test_closed_subscriptions_send_nothing(state: str) -> None:
    wire = Wire()
    sub = wire.subscribe()
    sub.confirm()
    wire.frames()
    sub.state = state
    assert sub.closed
    sub.deliver('{"n":1}', {})
    sub.transmit('{"n":1}')
    assert wire.frames() == []
