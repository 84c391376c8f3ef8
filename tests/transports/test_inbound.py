"""The transports' input limits, sans-I/O: the budget of frames and
bytes one socket may make the reader handle, bounded message assembly
(direct) and the frame scanner in front of trio-websocket. Plain calls,
the time passed in; no event loop."""

from __future__ import annotations

import math

import pytest

from tests.helpers import ws_frame
from trio_cable.transports.inbound import (
    STEP_FRAMES,
    Assembly,
    FrameScanner,
    InputBudget,
    InputLimits,
    Refusal,
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
