"""What one client's socket may make the process do, sans-I/O.

The direct transport reads frames itself, so it bounds what a client can
make it do before any frame reaches the protocol: :class:`InputBudget`
counts the frames (pings, pongs and fragments included) and bytes read
from one socket, says when the reader must let other tasks run, and
meters both against per-second rates (a client past them is read no
faster: TCP pushes back on it). :class:`Assembly` puts a fragmented
message together, bounded in bytes, fragments and time. The
trio-websocket transport, whose parser runs in trio-websocket's own
task, meters the bytes it hands that parser the same way, cut at frame
boundaries and held to the same message limits by :class:`FrameScanner`.
:func:`whole_texts` reads the one kind of input nearly every client sends
(whole, small, masked text frames) without wsproto's general parser.
Nothing here touches a socket or a clock: the time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from wsproto.connection import Connection
from wsproto.events import Event

from ..protocol.codec import utf8_size

__all__ = [
    "STEP_FRAMES",
    "Assembly",
    "FrameScanner",
    "InputBudget",
    "InputLimits",
    "Refusal",
    "ends_between_messages",
    "frame_events",
    "whole_texts",
]

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
        "throttled",
    )

    def __init__(self, limits: InputLimits, now: float) -> None:
        self._frame_rate = self._frames = limits.frames_per_second
        self._byte_rate = self._bytes = limits.bytes_per_second
        self._frame_stamp = self._byte_stamp = now
        self._step = 0
        #: Over its rates: the reader pauses (logged once per episode).
        self.throttled = False

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

    def whole(self, text: str) -> str | Refusal:
        """A whole text message (one final frame) while none is under
        way: itself, or a :class:`Refusal` if it is too large."""
        if utf8_size(text) > self._max_bytes:
            return self._too_large()
        return text

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


class FrameScanner:
    """Frame boundaries and message limits in a client's raw bytes, for a
    parser that has no budget of its own (trio-websocket's).

    :meth:`scan` reads frame headers only (nothing is unmasked nor
    decoded) and says how many bytes hold at most a given number of whole
    frames, so a reader can hand its parser a few frames at a time. It
    holds each message to what :class:`Assembly` holds it to: bytes
    across fragments (counted from the headers, so a frame announcing too
    much is refused before its payload comes), fragments (empty ones
    count) and time from its first frame.
    """

    __slots__ = (
        "_data",
        "_fin",
        "_fragments",
        "_header",
        "_max_bytes",
        "_max_fragments",
        "_message_bytes",
        "_remaining",
        "_seen",
        "_timeout",
        "started",
    )

    def __init__(self, max_bytes: int, limits: InputLimits) -> None:
        self._max_bytes = max_bytes
        self._seen = 0  # payload bytes of the unfinished message so far
        self._max_fragments = limits.max_fragments
        self._timeout = limits.message_timeout
        self._header = bytearray()  # a header not whole yet
        # Payload bytes of the current frame still to come (None: its header).
        self._remaining: int | None = None
        self._data = False  # the current frame is a data frame
        self._fin = False  # ... and the last of its message
        self._message_bytes = 0
        self._fragments = 0
        #: When the message being received began (None: none is).
        self.started: float | None = None

    @property
    def deadline(self) -> float:
        """When an unfinished message times out (inf: none is unfinished)."""
        return math.inf if self.started is None else self.started + self._timeout

    @property
    def buffered(self) -> int:
        """Payload bytes of the unfinished message passed so far (what the
        parser behind holds for it)."""
        return self._seen

    def _forget(self) -> None:
        self.started = None
        self._message_bytes = self._fragments = self._seen = 0

    def timed_out(self) -> Refusal:
        self._forget()
        return Refusal(1008, f"message not finished within {self._timeout:g} s")

    def scan(
        self, data: bytes, max_frames: int, now: float
    ) -> tuple[int, int] | Refusal:
        """``(size, frames)``: the first ``size`` bytes of ``data`` end
        ``frames`` frames (at most ``max_frames``; the rest of a frame
        begun may be in them too), or a :class:`Refusal`."""
        if now > self.deadline:
            return self.timed_out()
        pos = frames = 0
        end = len(data)
        while pos < end and frames < max_frames:
            if self._remaining is None:  # a header comes first
                pos, whole = self._read_header(data, pos)
                if not whole:
                    break
                refusal = self._frame_started(now)
                if refusal is not None:
                    return refusal
            assert self._remaining is not None
            take = min(self._remaining, end - pos)
            pos += take
            self._remaining -= take
            if self._data:
                self._seen += take
            if self._remaining:
                break
            self._remaining = None
            frames += 1
            refusal = self._frame_finished()
            if refusal is not None:
                return refusal
        return pos, frames

    def _read_header(self, data: bytes, pos: int) -> tuple[int, bool]:
        """Take header bytes from ``data`` at ``pos``; the header is parsed
        (and emptied) once whole. Returns the new position, and whether
        the header is whole."""
        header = self._header
        while True:
            need = _header_size(header)
            take = min(need - len(header), len(data) - pos)
            header += data[pos : pos + take]
            pos += take
            if len(header) < need:
                return pos, False
            if _header_size(header) == need:
                break
        size = header[1] & 0x7F
        if size == 126:
            size = int.from_bytes(header[2:4], "big")
        elif size == 127:
            size = int.from_bytes(header[2:10], "big")
        opcode = header[0] & 0x0F
        self._data = opcode < 8
        self._fin = bool(header[0] & 0x80)
        if self._data and opcode != 0:  # a new message
            self._message_bytes = self._fragments = self._seen = 0
        self._remaining = size
        self._header = bytearray()
        return pos, True

    def _frame_started(self, now: float) -> Refusal | None:
        if not self._data:
            return None  # control frames: 125 bytes at most, parsers check
        if self.started is None:
            self.started = now
        self._message_bytes += self._remaining or 0
        if self._message_bytes > self._max_bytes:
            self._forget()
            return Refusal(1009, f"messages are limited to {self._max_bytes} bytes")
        return None

    def _frame_finished(self) -> Refusal | None:
        if not self._data:
            return None
        if self._fin:
            self._forget()
            return None
        self._fragments += 1
        if self._fragments > self._max_fragments:
            self._forget()
            return Refusal(
                1008, f"messages are limited to {self._max_fragments} fragments"
            )
        return None


def _header_size(header: bytearray) -> int:
    """The size of a frame header beginning with ``header`` (2 until its
    second byte says more)."""
    if len(header) < 2:
        return 2
    size = header[1] & 0x7F
    extra = 2 if size == 126 else 8 if size == 127 else 0
    return 2 + extra + (4 if header[1] & 0x80 else 0)


def whole_texts(data: bytes) -> list[str] | None:
    """The messages in ``data`` if it holds nothing but whole text frames
    as clients send them: final (unfragmented), masked, no extension bits,
    under 64 KiB, their length in the fewest bytes, their text valid
    UTF-8, at most :data:`STEP_FRAMES` of them (a flood of tiny frames is
    left to wsproto, which parses a frame at a time as the reader takes
    them: the messages of a whole read are not all held at once). None
    for anything else (a control frame, a fragment, a frame cut off at
    the end, any error), which is then wsproto's to read."""
    texts: list[str] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] != 0x81 or end - pos < 6 or len(texts) == STEP_FRAMES:
            return None
        size = data[pos + 1] ^ 0x80  # the mask bit set: 0-125, 126
        pos += 2
        if size == 126:
            size = int.from_bytes(data[pos : pos + 2])
            pos += 2
            if size < 126:
                return None
        elif size > 126:  # unmasked, or 64 KiB and more
            return None
        mask, start = data[pos : pos + 4], pos + 4
        pos = start + size
        if pos > end:
            return None
        payload = int.from_bytes(data[start:pos]) ^ int.from_bytes(
            (mask * (size // 4 + 1))[:size]
        )
        try:
            texts.append(payload.to_bytes(size).decode())
        except UnicodeDecodeError:
            return None
    return texts


def ends_between_messages(data: bytes) -> bool:
    """Whether ``data``, read from the start of a frame with no message
    under way, ends where a frame ends and no message is under way: then
    a parser that read it holds nothing back."""
    pos, end, open_ = 0, len(data), False
    while pos < end:
        if end - pos < 2:
            return False
        first, size = data[pos], data[pos + 1] & 0x7F
        extra = 2 if size == 126 else 8 if size == 127 else 0
        if extra:
            size = int.from_bytes(data[pos + 2 : pos + 2 + extra])
        pos += 2 + extra + (4 if data[pos + 1] & 0x80 else 0) + size
        if first & 0x0F < 8:  # a data frame: its message ends with FIN
            open_ = not first & 0x80
    return pos == end and not open_


def frame_events(
    data: bytes, plain: bool, is_open: bool, wsproto: Callable[[], Connection]
) -> tuple[Iterator[Event | str], bool]:
    """The events of ``data`` read from the client, and whether wsproto
    holds no part of a frame or message after it (``plain``: it held none
    before; ``is_open``: no close frame yet). Whole text frames are read
    by :func:`whole_texts` (about 15 µs a frame less than wsproto's
    parser, and what nearly every client sends) and come as their text
    (a whole message, with none under way); anything else as events of
    the connection ``wsproto()`` gives (made then, if it is not yet).
    After an event that closes the connection (an error included:
    wsproto reads nothing more after one) the caller must read no more."""
    texts = whole_texts(data) if plain and is_open else None
    if texts is not None:
        return iter(texts), True
    plain = plain and ends_between_messages(data)
    ws = wsproto()
    ws.receive_data(data)
    return ws.events(), plain
