"""What one client's socket may make the process do, sans-I/O.

The direct transport reads frames itself, so it bounds what a client can
make it do before any frame reaches the protocol: :class:`InputBudget`
counts the frames (pings, pongs and fragments included) and bytes read
from one socket, says when the reader must let other tasks run, and
meters both against per-second rates (a client past them is read no
faster: TCP pushes back on it). :class:`Assembly` puts a fragmented
message together, bounded in bytes, fragments and time. Nothing here
touches a socket or a clock: the time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ..protocol.codec import utf8_size

__all__ = ["STEP_FRAMES", "Assembly", "InputBudget", "InputLimits", "Refusal"]

#: Frames one connection's reader handles before it lets other tasks run:
#: a read can hold thousands of tiny frames, and handling them all in one
#: go would keep every other client waiting.
STEP_FRAMES: Final = 32


@dataclass(frozen=True, slots=True)
class InputLimits:
    """What one client may send the direct transport (see ``Cable``)."""

    frames_per_second: float = 1000.0
    bytes_per_second: float = 1024.0 * 1024.0
    max_fragments: int = 1024
    message_timeout: float = 10.0


def _take(
    rate: float, tokens: float, stamp: float, amount: float, now: float
) -> tuple[float, float]:
    """A token bucket holding one second's worth, which may go into debt:
    ``amount`` taken at ``now`` from ``tokens`` last counted at ``stamp``.
    Returns the tokens left and the seconds to wait (0: none), which is
    the debt."""
    tokens = min(rate, tokens + (now - stamp) * rate) - amount
    return tokens, (0.0 if tokens >= 0 else -tokens / rate)


class InputBudget:
    """The frames and bytes one socket has made the reader handle.

    Call :meth:`frame` for every frame (or part of one) the parser gives
    and :meth:`bytes_read` for every read; each returns None while the
    reader may go on, or how long it must pause (0.0: just let the others
    run; more: the client is over its rate). Two token buckets, kept as
    plain fields (one object per connection, not three).
    """

    __slots__ = (
        "_byte_rate",
        "_byte_stamp",
        "_bytes",
        "_frame_rate",
        "_frame_stamp",
        "_frames",
        "_step",
    )

    def __init__(self, limits: InputLimits, now: float) -> None:
        self._frame_rate = self._frames = limits.frames_per_second
        self._byte_rate = self._bytes = limits.bytes_per_second
        self._frame_stamp = self._byte_stamp = now
        self._step = 0

    def frame(self, now: float) -> float | None:
        self._step += 1
        if self._step < STEP_FRAMES:
            return None
        self._step = 0
        self._frames, wait = _take(
            self._frame_rate, self._frames, self._frame_stamp, STEP_FRAMES, now
        )
        self._frame_stamp = now
        return wait

    def bytes_read(self, count: int, now: float) -> float:
        self._bytes, wait = _take(
            self._byte_rate, self._bytes, self._byte_stamp, count, now
        )
        self._byte_stamp = now
        return wait


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message is refused: the close code and reason to send."""

    code: int
    reason: str


class Assembly:
    """One message put together from its frames, bounded in bytes (UTF-8,
    as on the wire), in fragments (empty ones count) and in time (from
    its first part).

    A message in one frame is passed on as it came; a fragmented one is
    kept as its UTF-8 bytes in one growing buffer (not a string per
    fragment, each with its own object header) and decoded once whole.
    """

    __slots__ = (
        "_buffer",
        "_fragments",
        "_max_bytes",
        "_max_fragments",
        "_text",
        "_timeout",
        "started",
    )

    def __init__(self, max_bytes: int, limits: InputLimits) -> None:
        self._max_bytes = max_bytes
        self._max_fragments = limits.max_fragments
        self._timeout = limits.message_timeout
        self._buffer = bytearray()
        self._fragments = 0
        self._text = False
        #: When the message being put together began (None: none is).
        self.started: float | None = None

    @property
    def deadline(self) -> float:
        """When an unfinished message times out (inf: none is unfinished)."""
        return math.inf if self.started is None else self.started + self._timeout

    @property
    def buffered(self) -> int:
        """Bytes held for the unfinished message."""
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer = bytearray()
        self._fragments = 0
        self.started = None

    def timed_out(self) -> Refusal:
        self.reset()
        return Refusal(1008, f"message not finished within {self._timeout:g} s")

    def _too_large(self) -> Refusal:
        self.reset()
        return Refusal(1009, f"messages are limited to {self._max_bytes} bytes")

    def add(
        self,
        data: str | bytes | bytearray,
        *,
        frame_finished: bool,
        message_finished: bool,
        now: float,
    ) -> str | bytes | Refusal | None:
        """A part of a message: the whole message once it is complete, a
        :class:`Refusal` past a limit, None while it is unfinished."""
        if self.started is None:
            if message_finished:  # one frame, as nearly every client sends
                if isinstance(data, str):
                    if utf8_size(data) > self._max_bytes:
                        return self._too_large()
                    return data
                if len(data) > self._max_bytes:
                    return self._too_large()
                return bytes(data)
            self.started = now
            self._text = isinstance(data, str)
        elif now > self.started + self._timeout:
            return self.timed_out()
        buffer = self._buffer
        buffer += data.encode() if isinstance(data, str) else data
        if len(buffer) > self._max_bytes:
            return self._too_large()
        if frame_finished:
            self._fragments += 1
            if self._fragments > self._max_fragments:
                self.reset()
                return Refusal(
                    1008, f"messages are limited to {self._max_fragments} fragments"
                )
        if not message_finished:
            return None
        message = buffer.decode() if self._text else bytes(buffer)
        self.reset()
        return message
