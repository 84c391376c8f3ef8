"""Property tests of the guide dialect's parser and frames: whatever a
client sends, ``proper-channels-v1-json`` either parses it into a command
or raises :class:`~trio_cable.ProtocolError` with a known reason, and
every frame the server would answer with is UTF-8 JSON naming the same
subscription. Derandomized, no example database."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_cable import ProtocolError
from trio_cable.protocol.codec import Message, Subscribe, Unsubscribe
from trio_cable.protocol.dialects import PROPER_CHANNELS_V1_JSON as GUIDE
from trio_cable.protocol.guide import guide_identifier

REASONS = {
    "invalid_json",
    "unknown_command",
    "invalid_request",
    "invalid_action",
    "identifier_too_large",
    "json_too_deep",
}

FAST = settings(
    database=None,
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["\ud800", "\udfff", "é", "\u2028"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """Valid-looking frames with any field possibly swapped for other JSON."""
    frame: dict[str, Any] = {
        "command": draw(st.sampled_from(["subscribe", "unsubscribe", "message"])),
        "channel": draw(st.sampled_from(["ChatChannel", "É", "\ud800"])),
        "params": draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        "action": draw(st.sampled_from(["speak", "receive", "_x"])),
        "data": draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
    }
    if draw(st.booleans()):
        frame["ref"] = draw(st.integers() | st.text(max_size=70) | json_values)
    for key in draw(st.lists(st.sampled_from(list(frame)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del frame[key]
        else:
            frame[key] = draw(json_values)
    return frame


def check(text: str) -> None:
    try:
        command = GUIDE.parse(text)
    except ProtocolError as exc:
        check_error(exc)
        return
    assert type(command) in (Subscribe, Unsubscribe, Message)
    frame = json.loads(text)
    name = guide_identifier(frame["channel"], frame.get("params") or {})
    assert command.identifier == name
    # every frame about it goes out as UTF-8 and names it the same way
    sent = [
        GUIDE.confirm(name),
        GUIDE.reject(name, "unknown_channel"),
        GUIDE.message_prefix(name) + "null}",
        GUIDE.error("not_subscribed", "x", name),
        GUIDE.reply(name, 1, "[]"),
        GUIDE.reply_error(name, "r", "server_error", "x"),
    ]
    for wire in sent:
        out = json.loads(wire.encode())
        assert guide_identifier(out["channel"], out["params"]) == name
    if isinstance(command, Message):
        assert command.data["action"] == command.action


def check_error(exc: ProtocolError) -> None:
    assert exc.reason in REASONS, exc.reason
    wire = GUIDE.error(exc.reason, exc.message, exc.identifier).encode()
    assert json.loads(wire)["reason"] == exc.reason


@FAST
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@FAST
@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    check(json.dumps(value))


@FAST
@given(frames())
def test_mutated_frames(frame: dict[str, Any]) -> None:
    check(json.dumps(frame))
