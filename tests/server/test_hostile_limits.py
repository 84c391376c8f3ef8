"""Limits exactly as documented, refusals that echo nothing big back, and
floods of refusals summarised in the log (issue 15, point 8).

``max_frame_bytes`` counts the bytes on the wire, not characters (a frame
of emoji once passed four times the limit and was broadcast);
``max_identifier_bytes`` holds for every command that names an
identifier, and an error about an identifier over it does not quote it;
error messages quote at most a short piece of what the client sent; and
a flood of refused handshakes writes a line and a summary, not a line
each.
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    SERVERS,
    RawClient,
    Server,
    raw_connect,
    served,
    served_on,
)
from tests.helpers.canary import CANARY, canary_feed, hostile_cable
from trio_cable._logsummary import LogSummary
from trio_cable.protocol import ChannelRules, ProtocolSettings, ServerProtocol
from trio_cable.protocol.codec import Limits
from trio_cable.protocol.dialects import ACTIONCABLE_V1_JSON
from trio_cable.testing import cable_test_client, identifier_for

EMOJI = "\N{GRINNING FACE}"  # one character, four bytes in UTF-8


class Host:
    def __init__(self) -> None:
        self.counts: list[str] = []

    def channel_rules(self, name: str) -> ChannelRules | None:
        return ChannelRules("Room", {"speak"}, set()) if name == "Room" else None

    def count(self, name: str) -> None:
        self.counts.append(name)


def protocol(**settings: Any) -> tuple[ServerProtocol, list[dict[str, Any]]]:
    sent: list[str] = []
    proto = ServerProtocol(
        ACTIONCABLE_V1_JSON,
        ProtocolSettings(**settings),
        send=sent.append,
        host=Host(),
    )
    frames: list[dict[str, Any]] = []
    proto.send = lambda frame: frames.append(json.loads(frame))
    return proto, frames


def test_frame_size_counts_bytes_not_characters() -> None:
    proto, frames = protocol(max_frame_bytes=1000)
    ident = identifier_for("Room")
    speak = json.dumps({"action": "speak", "text": EMOJI * 240}, ensure_ascii=False)
    frame = json.dumps(
        {"command": "message", "identifier": ident, "data": speak}, ensure_ascii=False
    )
    assert len(frame) < 1000 < len(frame.encode())
    proto.receive(frame, 0.0)
    assert [f["reason"] for f in frames] == ["frame_too_large"]


@pytest.mark.parametrize("command", ["subscribe", "message", "unsubscribe", "bogus"])
def test_every_identifier_is_held_to_the_limit_and_never_echoed(command: str) -> None:
    proto, frames = protocol(limits=Limits(max_identifier_bytes=100))
    huge = identifier_for("Room", pad="x" * 60_000)
    frame: dict[str, Any] = {"command": command, "identifier": huge}
    if command == "message":
        frame["data"] = json.dumps({"action": "speak"})
    proto.receive(json.dumps(frame), 0.0)
    [error] = frames
    assert error["reason"] == "identifier_too_large"
    assert "about" not in error
    assert len(json.dumps(error)) < 200
    # Counted in bytes: 30 emoji are 30 characters and 120 bytes.
    frames.clear()
    proto.receive(json.dumps(dict(frame, identifier=EMOJI * 30)), 0.0)
    assert [f["reason"] for f in frames] == ["identifier_too_large"]


def test_error_messages_quote_only_a_piece_of_what_was_sent() -> None:
    proto, frames = protocol()
    ident = identifier_for("Room")
    proto.receive(json.dumps({"command": "c" * 50_000, "identifier": ident}), 0.0)
    sub = proto.receive(json.dumps({"command": "subscribe", "identifier": ident}), 0)
    assert sub is not None
    sub.subscription.confirm()
    for action in ("a" * 50_000, "_" + "a" * 50_000):
        data = json.dumps({"action": action})
        proto.receive(
            json.dumps({"command": "message", "identifier": ident, "data": data}), 0.0
        )
    errors = [f for f in frames if f.get("type") == "error"]
    assert [f["reason"] for f in errors] == [
        "unknown_command",
        "unknown_action",
        "invalid_action",
    ]
    assert all(len(f["message"]) < 100 for f in errors), errors


@pytest.mark.parametrize("server", SERVERS)
async def test_an_emoji_frame_over_the_limit_is_refused_over_sockets(
    server: Server,
) -> None:
    """The attack as it was: four times the limit in emoji, to broadcast."""
    cable = hostile_cable(max_frame_bytes=64 * 1024)
    async with (
        served_on(cable, server) as port,
        canary_feed(cable, port),
        AsyncExitStack() as stack,
    ):
        bad = await raw_connect(stack, port, welcome=True)
        await bad.subscribe(CANARY)
        text = EMOJI * 60_000  # 60,000 characters, 240,000 bytes
        data = json.dumps({"action": "echo", "n": text}, ensure_ascii=False)
        frame = {"command": "message", "identifier": CANARY, "data": data}
        await bad.send_text(json.dumps(frame, ensure_ascii=False))
        with trio.fail_after(LOSS_BOUND):
            while (got := await bad.receive()) is not None:
                if got.get("type") == "error" or "echo" in got.get("message", {}):
                    break
        assert got is not None
        assert got.get("reason") == "frame_too_large", str(got)[:200]


# -- refusals in the log -------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_of_events_is_one_line_and_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = logging.getLogger("trio_cable.test")
    summary = LogSummary(log, interval=10.0, clock=clock)
    with caplog.at_level(logging.INFO, "trio_cable.test"):
        for i in range(5000):
            clock.now = i / 1000
            summary.event("a" if i % 2 else "b", "refused %d", i)
        summary.tick()  # the interval is not over: nothing yet
        assert [r.getMessage() for r in caplog.records] == ["refused 0"]
        clock.now = 10.0
        summary.tick()
        summary.tick()
        clock.now = 30.0
        summary.event("a", "refused %d", 9999)
        summary.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "... and 4999 more like it in 10 s (a: 2500, b: 2499)",
        "refused 9999",
    ]


async def test_refused_handshakes_are_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cable = hostile_cable(allowed_origins=["https://app.example"])
    with caplog.at_level(logging.INFO, "trio_cable"):
        async with served(cable) as port:
            for _ in range(200):
                client = await RawClient.open(port)
                try:
                    with trio.fail_after(LOSS_BOUND):
                        head = await client.handshake(
                            port, headers="Origin: https://evil.example\r\n"
                        )
                finally:
                    await client.aclose()
                assert head.startswith(b"HTTP/1.1 403")
        # In memory too: one more, after the cable stopped counting.
        async with cable.running():
            with pytest.raises(Exception, match="403"):
                async with cable_test_client(
                    cable, headers={"origin": "https://evil.example"}
                ):
                    pass  # pragma: no cover
    refusals = [r for r in caplog.records if "refused a handshake" in r.getMessage()]
    summaries = [r for r in caplog.records if "more like it" in r.getMessage()]
    assert cable.counters["origin_refused"] == 201
    assert len(refusals) <= 2, [r.getMessage() for r in refusals]
    assert summaries, "the refusals were not summarised"
    assert "origin_refused: 199" in summaries[0].getMessage()
