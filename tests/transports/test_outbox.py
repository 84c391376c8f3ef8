"""The direct transport's backlog: what a socket has not taken, in order."""

from __future__ import annotations

from trio_cable.transports.outbox import WRITE_CHUNK, Outbox


def test_frames_leave_in_order_joined_up_to_a_chunk() -> None:
    outbox = Outbox()
    assert outbox.add(b"abc") == 3
    assert outbox.add(b"de") == 5
    count, chunk = outbox.chunk()
    assert (count, chunk) == (2, b"abcde")
    outbox.sent(count, chunk, 5)
    assert (outbox.frames, outbox.size, outbox.head_partial) == ([], 0, False)


def test_a_write_cut_short_keeps_its_rest_first_and_drop_keeps_it() -> None:
    outbox = Outbox()
    outbox.add(b"rest-of-a-frame", partial=True)
    outbox.add(b"next")
    count, chunk = outbox.chunk()
    outbox.sent(count, chunk, 5)  # the socket took 5 bytes
    assert outbox.frames == [b"of-a-framenext"]
    assert outbox.head_partial
    assert outbox.size == len(b"of-a-framenext")
    outbox.add(b"more")
    outbox.drop()  # a too-slow client: all but the frame under way
    assert outbox.frames == [b"of-a-framenext"]
    assert outbox.size == len(b"of-a-framenext")


def test_drop_without_a_partial_frame_empties_it() -> None:
    outbox = Outbox()
    outbox.add(b"x")
    outbox.add(b"y")
    outbox.drop()
    assert (outbox.frames, outbox.size) == ([], 0)


def test_a_chunk_stops_past_write_chunk() -> None:
    outbox = Outbox()
    big = b"z" * (WRITE_CHUNK // 2)
    for _ in range(4):
        outbox.add(big)
    count, chunk = outbox.chunk()
    assert count == 2
    assert len(chunk) == WRITE_CHUNK
    outbox.sent(count, chunk, len(chunk))
    assert len(outbox.frames) == 2
    assert outbox.size == WRITE_CHUNK
