"""The bytes a socket has not taken yet, in order: the direct
transport's backlog (sans-I/O: the transport does the sends).

A socket that takes every write (nearly all of them) has no outbox; one
is made when a ``send()`` leaves something behind, and let go once it
is written (a list per idle socket would be 56 bytes for nothing).
"""

from __future__ import annotations

from typing import Final

__all__ = ["WRITE_CHUNK", "Outbox"]

#: A backlog is joined into writes of about this size: big enough that a
#: burst costs one syscall per socket, small enough that a slow client's
#: backlog is not copied into one huge buffer.
WRITE_CHUNK: Final = 64 * 1024


class Outbox:
    """Frames (encoded) waiting for the socket, and their size."""

    __slots__ = ("frames", "head_partial", "size")

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.size = 0
        #: frames[0] is the rest of a frame partly sent: never dropped.
        self.head_partial = False

    def add(self, data: bytes, *, partial: bool = False) -> int:
        """Queue ``data`` (``partial``: the rest of a write the socket took
        some of, first in line); the backlog's size in bytes."""
        self.frames.append(data)
        self.size += len(data)
        if partial:
            self.head_partial = True
        return self.size

    def chunk(self) -> tuple[int, bytes]:
        """The next write: how many frames, joined (up to WRITE_CHUNK)."""
        frames = self.frames
        count, size = 0, 0
        while count < len(frames) and size < WRITE_CHUNK:
            size += len(frames[count])
            count += 1
        return count, frames[0] if count == 1 else b"".join(frames[:count])

    def sent(self, count: int, chunk: bytes, sent: int) -> None:
        """``sent`` bytes of ``chunk`` (the next ``count`` frames) went out."""
        del self.frames[:count]
        self.size -= sent
        self.head_partial = sent < len(chunk)
        if self.head_partial:
            self.frames.insert(0, chunk[sent:])

    def drop(self) -> None:
        """Drop what waits, but the rest of a frame partly sent."""
        self.frames = self.frames[:1] if self.head_partial else []
        self.size = sum(len(data) for data in self.frames)
