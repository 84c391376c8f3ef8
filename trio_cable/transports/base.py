"""The one contract every transport implements, and what serving needs.

A :class:`Transport` is one accepted WebSocket seen as text frames: the
connection hands it each encoded frame with :meth:`~Transport.write_nowait`
(never waiting) and runs :meth:`~Transport.flush` in a writer task only
while frames wait. A socket that can only send by waiting implements the
smaller :class:`MessageSocket` and gets the contract from
:class:`~trio_cable.transports.queued.QueuedTransport`. A
:class:`Handshake` is a WebSocket not yet accepted: the serving path
reads its request and accepts or refuses it.

Every error of a socket is mapped here to
:class:`~trio_cable.TransportClosed` (or passed on as a bug).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .._errors import TransportClosed

if TYPE_CHECKING:
    from .._request import Request

__all__ = ["Handshake", "MessageSocket", "Transport", "TransportClosed"]


class Transport(Protocol):
    """One accepted WebSocket, as encoded text frames in and out."""

    @property
    def backlog_frames(self) -> int:
        """Frames (or the rest of one) waiting for the socket."""
        ...

    @property
    def backlog_bytes(self) -> int:
        """Their size (bytes, or characters for a queued transport)."""
        ...

    def stalled(self) -> bool:
        """Whether the client has stopped taking data (its socket takes no
        more writes): a backlog is then the client's doing, not a busy
        server's."""
        ...

    def write_nowait(self, frame: str) -> int:
        """Write ``frame`` now, or as much as the socket takes, and queue
        the rest; return the size now waiting (0: all written). Never
        waits. Raises :class:`TransportClosed` if the socket is gone."""
        ...

    def hand_off(self, writer: Callable[[], None]) -> bool:
        """Have what waits written without the connection's writer task (by
        a task that writes many sockets' backlogs); False if the writer
        must :meth:`flush` it. If the backlog is later given back (its
        socket stopped taking writes), ``writer()`` starts that writer."""
        ...

    async def flush(self) -> None:
        """Wait until everything queued is written (our close frame too,
        after :meth:`close_nowait`). Raises :class:`TransportClosed` if the
        socket is gone, also when this flush ran the whole close handshake
        (a queued transport's close does)."""

    def close_nowait(self, code: int = 1000) -> int:
        """Queue our close frame after the backlog (if still open); return
        the size waiting (then :meth:`flush` sends it)."""
        ...

    def drop_backlog(self) -> None:
        """Forget queued frames (keeping the rest of one half sent)."""

    async def receive(self) -> str | bytes:
        """The next frame from the peer; :class:`TransportClosed` at the end.

        A receive that is waiting while our close handshake runs ends with
        it where the reader is the one that sees the peer's reply (the
        direct transport); where :meth:`flush` or :meth:`close` run the
        handshake to its end instead, the caller ends the reader."""
        ...

    async def close(self, code: int = 1000) -> None:
        """The close handshake, then the socket; idempotent; bounded by the
        caller's deadline (the socket is closed even if cancelled)."""

    async def aclose(self) -> None:
        """Close the socket now, without a close handshake; idempotent."""


class MessageSocket(Protocol):
    """A WebSocket that can only send by waiting (trio-websocket, ASGI,
    in-memory); each method raises :class:`TransportClosed` once it is
    gone. ``cancel_safe``: a send cancelled has written nothing (so the
    socket stays usable for a goodbye)."""

    cancel_safe: bool

    def stalled(self) -> bool:
        """Whether the peer has stopped taking data (True if unknown)."""
        ...

    async def send(self, frame: str) -> None: ...

    async def receive(self) -> str | bytes: ...

    async def close(self, code: int = 1000) -> None:
        """Close (with a handshake where there is one); idempotent; the
        socket is closed even if cancelled."""


class Handshake(Protocol):
    """A WebSocket handshake not yet answered."""

    async def request(self) -> Request | None:
        """The handshake request (path, headers, subprotocols, client,
        scheme); None if the client left or sent nonsense (answered here)."""
        ...

    async def refuse(self, status: int, reason: str) -> None:
        """Refuse with an HTTP status, before any WebSocket exists."""

    async def accept(self, subprotocol: str | None) -> Transport | None:
        """Accept, selecting ``subprotocol``; None if the client left."""
        ...
