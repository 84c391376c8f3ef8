"""The input gate in front of trio-websocket, over an in-memory stream
pair: what it hands its parser per read, and how it refuses."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.helpers import ws_frame
from trio_cable.transports.gate import InputGate
from trio_cable.transports.inbound import STEP_FRAMES, InputLimits

HEAD = b"GET /cable HTTP/1.1\r\nHost: x\r\n\r\n"
#: Frames built once: ws_frame masks each with a new random key.
PING = ws_frame(b"", 0x9)
EMPTY = ws_frame(b"{}")


def gate_pair(
    limits: InputLimits | None = None, max_message_size: int = 1000
) -> tuple[InputGate, trio.testing.MemoryStapledStream, list[str]]:
    client, server = trio.testing.memory_stream_pair()
    counted: list[str] = []
    gate = InputGate(
        server,
        max_message_size=max_message_size,
        limits=limits or InputLimits(),
        close_timeout=1.0,
        count=counted.append,
    )
    return gate, client, counted


async def test_the_head_then_a_step_of_whole_frames_per_read() -> None:
    gate, client, _ = gate_pair()
    pings = PING * (STEP_FRAMES + 5)
    # The head and frames in one write (a client that does not wait for 101).
    await client.send_all(HEAD + pings)
    assert await gate.receive_some(65536) == HEAD
    first = await gate.receive_some(65536)
    assert first == PING * STEP_FRAMES
    assert await gate.receive_some(65536) == PING * 5


async def test_a_head_split_across_reads_is_found() -> None:
    gate, client, _ = gate_pair()
    got = b""
    for part in (HEAD[:-3], HEAD[-3:-1], HEAD[-1:] + EMPTY):
        await client.send_all(part)
        got += await gate.receive_some(65536)
    assert got == HEAD  # the frame waits for the next read
    assert await gate.receive_some(65536) == EMPTY


async def test_a_refused_message_is_closed_with_its_code_and_nothing_follows() -> None:
    gate, client, counted = gate_pair(max_message_size=10)
    await client.send_all(HEAD + ws_frame(b"x" * 11))
    assert await gate.receive_some(65536) == HEAD
    assert await gate.receive_some(65536) == b""  # the parser sees the end
    close = await client.receive_some(65536)
    assert close[:2] == bytes([0x88, len(close) - 2])  # unmasked close frame
    assert int.from_bytes(close[2:4], "big") == 1009
    assert close[4:] == b"messages are limited to 10 bytes"
    assert counted == ["message_refused"]
    with pytest.raises(trio.BrokenResourceError):
        await gate.send_all(b"more")


async def test_an_unfinished_message_times_out(autojump_clock: object) -> None:
    gate, client, counted = gate_pair(InputLimits(message_timeout=2.0))
    part = ws_frame(b"{", 0x1, fin=False)
    await client.send_all(HEAD + part)
    await gate.receive_some(65536)
    assert await gate.receive_some(65536) == part
    started = trio.current_time()
    assert await gate.receive_some(65536) == b""  # nothing more came
    assert trio.current_time() - started == pytest.approx(2.0)
    close = await client.receive_some(65536)
    assert int.from_bytes(close[2:4], "big") == 1008
    assert counted == ["message_refused"]


async def test_a_client_over_its_frame_rate_is_read_slower(
    autojump_clock: object,
) -> None:
    limits = InputLimits(frames_per_second=10 * STEP_FRAMES)
    gate, client, counted = gate_pair(limits)
    await client.send_all(HEAD + PING * (20 * STEP_FRAMES))
    await gate.receive_some(65536)
    start = trio.current_time()
    for _ in range(20):
        await gate.receive_some(65536)
    # One second's worth at once, the second ten steps at the rate.
    assert trio.current_time() - start == pytest.approx(1.0, abs=0.15)
    assert counted == ["input_throttled"]
