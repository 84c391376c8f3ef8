"""The direct transport's input limits, sans-I/O: the budget of frames and
bytes one socket may make the reader handle, and bounded message
assembly. Plain calls, the time passed in; no event loop."""

from __future__ import annotations

import math

import pytest

from trio_cable.transports.inbound import (
    STEP_FRAMES,
    Assembly,
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
