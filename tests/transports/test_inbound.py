"""The transports' input limits, sans-I/O: the budget of frames and
bytes one socket may make the reader handle, bounded message assembly
(direct), the frame scanner in front of trio-websocket, and the direct
transport's reading of whole text frames without wsproto (checked
against wsproto on random streams cut at random places). Plain calls,
the time passed in; no event loop."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from tests.helpers import ws_frame
from trio_cable.transports.inbound import (
    STEP_FRAMES,
    Assembly,
    FrameScanner,
    InputBudget,
    InputLimits,
    Refusal,
    ends_between_messages,
    frame_events,
    whole_texts,
)

LIMITS = InputLimits(
    frames_per_second=100 * STEP_FRAMES,
    bytes_per_second=1000,
    max_fragments=4,
    message_timeout=5.0,
)


def test_the_reader_yields_every_step() -> None:
    budget = InputBudget(LIMITS, now=0.0)
    for _ in range(3):
        pauses = [budget.frame(0.0) for _ in range(STEP_FRAMES)]
        assert pauses[:-1] == [None] * (STEP_FRAMES - 1)
        assert pauses[-1] == 0.0  # let the others run, no throttling


def test_frames_past_the_rate_wait_for_it() -> None:
    budget = InputBudget(LIMITS, now=0.0)
    # One second's worth passes at once (the burst)...
    for _ in range(100):
        assert [budget.frame(0.0) for _ in range(STEP_FRAMES)][-1] == 0.0
    # ...the next step is 1/100 s early.
    pause = [budget.frame(0.0) for _ in range(STEP_FRAMES)][-1]
    assert pause == pytest.approx(0.01)
    # Waiting that long pays the debt.
    assert [budget.frame(0.02) for _ in range(STEP_FRAMES)][-1] == 0.0


def test_bytes_past_the_rate_wait_for_it() -> None:
    budget = InputBudget(LIMITS, now=0.0)
    assert budget.bytes_read(1000, 0.0) == 0.0
    assert budget.bytes_read(500, 0.0) == pytest.approx(0.5)
    assert budget.bytes_read(100, 0.6) == pytest.approx(0.0)  # refilled 600


def test_a_message_in_one_frame_passes_as_it_came() -> None:
    assembly = Assembly(100, LIMITS)
    text = "é" * 10
    assert (
        assembly.add(text, frame_finished=True, message_finished=True, now=0.0) is text
    )
    assert assembly.deadline == math.inf
    assert assembly.add(b"\x00", frame_finished=True, message_finished=True, now=0) == (
        b"\x00"
    )


@pytest.mark.parametrize("parts", [["{", '"a"', ":1}"], [b"ab", b"", b"c"]])
def test_fragments_are_joined(parts: list[str] | list[bytes]) -> None:
    assembly = Assembly(100, LIMITS)
    for part in parts[:-1]:
        done = assembly.add(part, frame_finished=True, message_finished=False, now=1.0)
        assert done is None
    assert assembly.deadline == 6.0
    last = assembly.add(parts[-1], frame_finished=True, message_finished=True, now=2.0)
    assert last == parts[0][:0].join(parts)  # type: ignore[arg-type]  # str or bytes
    assert assembly.deadline == math.inf


def test_size_counts_utf8_bytes_not_characters() -> None:
    assembly = Assembly(8, LIMITS)
    emoji = "\N{GRINNING FACE}"  # one character, four bytes
    assert (
        assembly.add(emoji * 2, frame_finished=True, message_finished=True, now=0)
        == emoji * 2
    )
    refused = assembly.add(emoji * 3, frame_finished=True, message_finished=True, now=0)
    assert refused == Refusal(1009, "messages are limited to 8 bytes")


def test_size_counts_across_fragments() -> None:
    assembly = Assembly(8, LIMITS)
    first = assembly.add("12345", frame_finished=True, message_finished=False, now=0)
    assert first is None
    refused = assembly.add("6789", frame_finished=True, message_finished=True, now=0)
    assert isinstance(refused, Refusal)
    assert refused.code == 1009
    assert assembly.buffered == 0  # forgotten


def test_empty_fragments_count() -> None:
    assembly = Assembly(100, LIMITS)
    results = [
        assembly.add("", frame_finished=True, message_finished=False, now=0)
        for _ in range(5)
    ]
    assert results[:4] == [None] * 4
    assert results[4] == Refusal(1008, "messages are limited to 4 fragments")


def test_parts_of_one_frame_are_not_fragments() -> None:
    assembly = Assembly(100, LIMITS)
    for _ in range(10):
        assert (
            assembly.add("x", frame_finished=False, message_finished=False, now=0)
            is None
        )
    assert (
        assembly.add("y", frame_finished=True, message_finished=True, now=0)
        == "x" * 10 + "y"
    )


def test_an_unfinished_message_times_out() -> None:
    assembly = Assembly(100, LIMITS)
    assert (
        assembly.add("{", frame_finished=True, message_finished=False, now=10.0) is None
    )
    assert assembly.deadline == 15.0
    late = assembly.add("}", frame_finished=True, message_finished=True, now=15.5)
    assert late == Refusal(1008, "message not finished within 5 s")
    assert assembly.deadline == math.inf
    assert assembly.timed_out() == late  # what the reader sends at the deadline


# -- FrameScanner: frames found in raw bytes, for trio-websocket's reader ---


def scan_all(scanner: FrameScanner, data: bytes, now: float = 0.0) -> list[int]:
    """Scan ``data`` one step of 3 frames at a time; the steps' sizes."""
    sizes = []
    while data:
        scanned = scanner.scan(data, 3, now)
        assert not isinstance(scanned, Refusal), scanned
        size, _ = scanned
        sizes.append(size)
        data = data[size:]
    return sizes


def test_a_step_ends_at_a_frame_boundary() -> None:
    pings = [ws_frame(b"", 0x9), ws_frame(b"ab", 0xA), ws_frame(b"x" * 300, 0x1)]
    big = ws_frame(b"y" * 70_000, 0x2)  # a 64-bit length
    data = b"".join(pings) + big + ws_frame(b"{}")
    sizes = scan_all(FrameScanner(100_000, LIMITS), data)
    assert sizes == [sum(map(len, pings)), len(big) + len(ws_frame(b"{}"))]


def test_headers_and_payloads_may_come_a_byte_at_a_time() -> None:
    scanner = FrameScanner(100, LIMITS)
    frame = ws_frame(b"hello", 0x1)
    for i in range(len(frame)):
        assert scanner.scan(frame[i : i + 1], 1, 0.0) == (1, int(i == len(frame) - 1))
    assert scanner.deadline == math.inf


def test_scanned_size_counts_bytes_across_fragments() -> None:
    scanner = FrameScanner(8, LIMITS)
    first = ws_frame("\N{GRINNING FACE}".encode(), 0x1, fin=False)
    assert scanner.scan(first, 10, 0.0) == (len(first), 1)
    # Refused from the header: its payload never needs to arrive.
    header = ws_frame(b"12345", 0x0)[:6]
    assert scanner.scan(header, 10, 0.0) == Refusal(
        1009, "messages are limited to 8 bytes"
    )


def test_scanned_empty_fragments_count_and_pings_do_not() -> None:
    scanner = FrameScanner(100, LIMITS)
    data = ws_frame(b"", 0x1, fin=False) + ws_frame(b"", 0x9)
    data += ws_frame(b"", 0x0, fin=False) * 3
    assert scanner.scan(data, 100, 0.0) == (len(data), 5)
    refused = scanner.scan(ws_frame(b"", 0x0, fin=False), 100, 0.0)
    assert refused == Refusal(1008, "messages are limited to 4 fragments")


def test_a_scanned_message_times_out_from_its_first_frame() -> None:
    scanner = FrameScanner(100, LIMITS)
    part = ws_frame(b"x" * 50, 0x1)[:20]  # a frame promising more
    assert scanner.scan(part, 10, 10.0) == (20, 0)
    assert scanner.deadline == 15.0
    late = scanner.scan(b"x", 10, 15.5)
    assert late == Refusal(1008, "message not finished within 5 s")
    assert scanner.deadline == math.inf


def test_a_finished_message_starts_the_count_again() -> None:
    scanner = FrameScanner(10, LIMITS)
    for _ in range(10):  # 40 bytes and 20 fragments in all, 4 and 2 a message
        data = ws_frame(b"ab", 0x1, fin=False) + ws_frame(b"cd", 0x0)
        assert scanner.scan(data, 10, 0.0) == (len(data), 2)
    assert scanner.deadline == math.inf


# -- whole text frames without wsproto (the direct transport) ----------------------


def test_whole_text_frames_are_read_and_anything_else_is_not() -> None:
    text = "héllo ✓" * 30  # over 125 bytes: a 16-bit length
    assert whole_texts(ws_frame(b"a") + ws_frame(text.encode())) == ["a", text]
    assert whole_texts(ws_frame(b"")) == [""]
    assert whole_texts(ws_frame(b"a") * STEP_FRAMES) == ["a"] * STEP_FRAMES
    for other in [
        ws_frame(b"a")[:-1],  # cut off
        ws_frame(b"a", 0x2),  # binary
        ws_frame(b"a", 0x9),  # ping
        ws_frame(b"a", fin=False),  # a fragment
        ws_frame(b"a", rsv=4),  # an extension bit
        ws_frame(b"a", mask=False),
        ws_frame(b"\xff\xfe"),  # not UTF-8
        ws_frame(b"a", length=126)[:2] + (1).to_bytes(2) + ws_frame(b"a")[2:],
        ws_frame(b"a" * 70_000),  # a 64-bit length
        ws_frame(b"a") + ws_frame(b"b", 0x9),
        ws_frame(b"a") * (STEP_FRAMES + 1),  # a flood: wsproto, lazily
    ]:
        assert whole_texts(other) is None, other


def test_where_a_parser_holds_nothing_back() -> None:
    assert ends_between_messages(ws_frame(b"a") + ws_frame(b"b", 0x9))
    assert ends_between_messages(ws_frame(b"a", fin=False) + ws_frame(b"b", 0x0))
    assert ends_between_messages(ws_frame(b"a" * 70_000))
    assert not ends_between_messages(ws_frame(b"a")[:-1])
    assert not ends_between_messages(ws_frame(b"a", fin=False))
    assert not ends_between_messages(ws_frame(b"a", fin=False) + ws_frame(b"b", 0x9))
    assert not ends_between_messages(ws_frame(b"a" * 300)[:3])


def _frames(rng: random.Random) -> list[bytes]:
    """A client's stream: mostly whole text frames, with pings, binary
    messages, fragmented ones (pings between their fragments), long ones
    and, now and then, invalid UTF-8."""
    out = []
    for _ in range(rng.randrange(1, 30)):
        kind = rng.random()
        text = "".join(rng.choice("aé✓€") for _ in range(rng.choice([1, 50, 300])))
        if kind < 0.6:
            out.append(ws_frame(text.encode()))
        elif kind < 0.7:
            out.append(ws_frame(b"p", 0x9))
        elif kind < 0.8:
            out.append(ws_frame(bytes(rng.randrange(256) for _ in range(40)), 0x2))
        elif kind < 0.9:
            data = text.encode()
            cut = len(data) // 2
            out.append(ws_frame(data[:cut], 0x1, fin=False))
            out.append(ws_frame(b"p", 0x9))
            out.append(ws_frame(data[cut:], 0x0))
        elif kind < 0.95:
            out.append(ws_frame(b"x" * 70_000))
        else:
            out.append(ws_frame(b"ok \xc3"))  # cut inside a character
    return out


def _chunks(rng: random.Random, frames: list[bytes], aligned: bool) -> list[bytes]:
    """The reads a server might see: a few whole frames each (aligned), or
    cut anywhere."""
    if aligned:
        chunks = []
        while frames:
            take = rng.randrange(1, 4)
            chunks.append(b"".join(frames[:take]))
            frames = frames[take:]
        return chunks
    stream, chunks, pos = b"".join(frames), [], 0
    while pos < len(stream):
        size = rng.choice([1, 7, 64, 500, 4096, 100_000])
        chunks.append(stream[pos : pos + size])
        pos += size
    return chunks


def _read(events: Any) -> list[Any]:
    """Events as comparable values (a message's parts joined)."""
    seen: list[Any] = []
    for event in events:
        if isinstance(event, str):  # a whole text message (the fast reading)
            seen.append(("message", event))
        elif isinstance(event, TextMessage | BytesMessage):
            if seen and seen[-1][0] == "open":
                seen[-1] = ("open", seen[-1][1] + event.data)
            else:
                seen.append(("open", event.data))
            if event.message_finished:
                seen[-1] = ("message", seen[-1][1])
        elif isinstance(event, Ping):
            seen.append(("ping", event.payload))
        elif isinstance(event, CloseConnection):
            seen.append(("close", event.code))
    return seen


@pytest.mark.parametrize("aligned", [True, False], ids=["whole frames", "cut"])
def test_client_events_read_what_wsproto_reads(aligned: bool) -> None:
    """Random streams, read as whole frames or cut anywhere: the same
    messages, pings and errors as wsproto alone reading the same chunks,
    the fast reading used only while wsproto holds nothing."""
    fast = 0
    for seed in range(60):
        rng = random.Random(seed)
        reference = Connection(ConnectionType.SERVER)
        ws, plain = Connection(ConnectionType.SERVER), True

        def wsproto(ws: Connection = ws) -> Connection:
            return ws

        got: list[Any] = []
        expected: list[Any] = []
        for chunk in _chunks(rng, _frames(rng), aligned):
            fast += plain and whole_texts(chunk) is not None
            events, plain = frame_events(chunk, plain, True, wsproto)
            got += _read(events)
            reference.receive_data(chunk)
            expected += _read(reference.events())
            if expected and expected[-1][0] == "close":
                break  # the direct transport reads no more after it
        assert _merge(got) == _merge(expected), seed
    if aligned:
        assert fast > 50  # much of it read without wsproto


def _merge(seen: list[Any]) -> list[Any]:
    """Joins the parts of a message split over reads, as _read does within
    one."""
    merged: list[Any] = []
    for kind, value in seen:
        if merged and merged[-1][0] == "open" and kind in ("open", "message"):
            merged[-1] = (kind, merged[-1][1] + value)
        else:
            merged.append((kind, value))
    return merged
