"""Hypercorn's WebSocket messages held to the direct transport's limits.

Behind Hypercorn, its ``WSStream`` puts each message together from its
frames: one buffer per connection, counted in characters (text) against
``websocket_max_message_size`` (16 MiB by default), with no count of
fragments and no deadline, so a message of empty fragments that never
ends grows until the client stops. Hypercorn has no setting for any of
this, and no hook to give it another stream class: ``h11.py`` and
``h2.py`` each make ``WSStream(...)`` from the name they imported.

:class:`BoundedWSStream` is ``WSStream`` with its message assembly (and
nothing else) replaced by ours, :class:`~.inbound.Assembly`, the direct
transport's: bytes (UTF-8, as on the wire) across fragments up to the
smaller of ``max_message_size`` and Hypercorn's own setting, at most
``max_fragments`` fragments (empty ones count), and a deadline from the
first fragment, kept by a task even if the client sends nothing more.
A message past a limit is refused as the other transports refuse it: a
close frame (1009 for size, 1008 for fragments and time), the refusal
counted (``"message_refused"``) and logged, nothing more of that message
kept; the client's close reply ends the connection, or the socket is
closed after ``close_timeout`` without one.

:func:`bounded_messages` puts the class in the two places Hypercorn looks
it up, for as long as its ``with`` block runs, and only for the Hypercorn
versions whose ``WSStream`` it was written against (else it warns and
leaves Hypercorn as it is): replacing a private method of another
package is a promise about that package's code, so it is checked, not
assumed.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import StreamClosed
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping

from .inbound import Assembly, InputLimits, Refusal

__all__ = [
    "SUPPORTED_HYPERCORN",
    "BoundedWSStream",
    "MessageLimits",
    "bounded_messages",
    "limits_in_force",
    "unsupported_hypercorn",
]

log = logging.getLogger("trio_cable.hypercorn")

#: The Hypercorn releases (major, minor) whose ``WSStream`` this was
#: written against: its ``_handle_events`` is what we replace.
SUPPORTED_HYPERCORN: Final = frozenset({(0, 17), (0, 18)})
#: What the replacement uses of ``WSStream``.
_USED: Final = ("_handle_events", "_send_wsproto_event", "handle", "app_send")
#: Where Hypercorn looks the class up, each time it makes a stream.
_LOOKERS: Final = (hypercorn_h11, hypercorn_h2)
_CLASS: Final = "WSStream"


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """What a message may be behind Hypercorn (see the module)."""

    #: Bytes across fragments (Hypercorn's ``websocket_max_message_size``
    #: applies too, in bytes: the smaller wins).
    max_message_size: int = 1 << 20
    #: ``max_fragments`` and ``message_timeout`` (the rates are not used:
    #: Hypercorn reads its sockets itself).
    input: InputLimits = field(default_factory=InputLimits)
    #: How long a refused client has to answer our close frame.
    close_timeout: float = 1.0
    #: Told ``"message_refused"`` for each refusal.
    count: Callable[[str], None] | None = None


# The limits streams made from now on get (set by bounded_messages).
_limits = MessageLimits()


class BoundedWSStream(ws_stream.WSStream):
    """Hypercorn's ``WSStream``, messages put together within
    :class:`MessageLimits` (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = self._limits = _limits
        max_bytes = min(limits.max_message_size, self.config.websocket_max_message_size)
        self._assembly = Assembly(max_bytes, limits.input)
        self._refused = False
        self._close_deadline = math.inf
        # The task keeping the deadlines, while there is one to keep, and
        # its sleep (moved earlier when a refusal sets a close deadline).
        self._watch: trio.CancelScope | None = None
        self._nap: trio.CancelScope | None = None

    async def handle(self, event: Any) -> None:
        if isinstance(event, StreamClosed) and self._watch is not None:
            self._watch.cancel()
        await super().handle(event)

    async def _handle_events(self) -> None:
        # Hypercorn's own, with our assembly for its buffer.
        for event in self.connection.events():
            if isinstance(event, Message):
                if self._refused:
                    continue  # nothing more of it is kept
                done = self._assembly.add(
                    event.data,
                    frame_finished=event.frame_finished,
                    message_finished=event.message_finished,
                    now=trio.current_time(),
                )
                if isinstance(done, Refusal):
                    await self._refuse(done)
                elif done is not None:
                    text = isinstance(done, str)
                    assert self.app_put is not None
                    await self.app_put(
                        {
                            "type": "websocket.receive",
                            "bytes": None if text else done,
                            "text": done if text else None,
                        }
                    )
                else:
                    self._keep_deadlines()
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    @property
    def unfinished_bytes(self) -> int:
        """Bytes held for a message not yet complete."""
        return self._assembly.buffered

    async def _refuse(self, refusal: Refusal) -> None:
        self._refused = True
        self._assembly.reset()
        if self._limits.count is not None:
            self._limits.count("message_refused")
        log.info(
            "closing %s with code %d: %s",
            _peer(self.client),
            refusal.code,
            refusal.reason,
        )
        self._close_deadline = trio.current_time() + self._limits.close_timeout
        self._keep_deadlines()
        await self._send_wsproto_event(
            CloseConnection(code=refusal.code, reason=refusal.reason[:120])
        )

    def _deadline(self) -> float:
        return min(self._assembly.deadline, self._close_deadline)

    def _keep_deadlines(self) -> None:
        if self._watch is None:
            if not self.closed:
                self._watch = trio.CancelScope()
                self.task_group.spawn(self._watch_deadlines, self._watch)
        elif self._nap is not None:
            self._nap.deadline = min(self._nap.deadline, self._deadline())

    async def _watch_deadlines(self, scope: trio.CancelScope) -> None:
        """One task per connection while a message is unfinished or a
        refused client has yet to answer: an unfinished message past its
        deadline is refused; a refused client that has not answered by
        its close deadline has its socket closed. Cancelled when the
        stream closes."""
        close = False
        try:
            with scope:
                while not close:
                    deadline = self._deadline()
                    if deadline == math.inf:
                        return
                    if trio.current_time() < deadline:
                        with trio.CancelScope(deadline=deadline) as self._nap:
                            await trio.sleep_forever()
                        self._nap = None
                    elif self._close_deadline <= deadline:
                        close = True
                    else:
                        await self._refuse(self._assembly.timed_out())
        finally:
            self._watch = self._nap = None
        # Outside the scope: closing the stream cancels the watch, and
        # the close (which tells the app) must not be cancelled with it.
        if close and not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))


def limits_in_force() -> MessageLimits:
    """The limits Hypercorn's streams made now get."""
    return _limits


def _peer(client: tuple[str, int] | None) -> str:
    return "an unknown peer" if client is None else f"{client[0]}:{client[1]}"


def unsupported_hypercorn() -> str | None:
    """Why :class:`BoundedWSStream` cannot replace this Hypercorn's
    ``WSStream`` (None: it can)."""
    version = importlib.metadata.version("hypercorn")
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        release = ()
    if release not in SUPPORTED_HYPERCORN:
        known = ", ".join(f"{a}.{b}" for a, b in sorted(SUPPORTED_HYPERCORN))
        return f"Hypercorn {version} is not one of the releases checked ({known})"
    missing = [name for name in _USED if not hasattr(ws_stream.WSStream, name)]
    if missing:
        return f"Hypercorn {version}'s WSStream has no {', '.join(missing)}"
    for module in _LOOKERS:
        found = getattr(module, _CLASS, None)
        if found is not ws_stream.WSStream and found is not BoundedWSStream:
            return f"{module.__name__}.WSStream is {found!r}, not Hypercorn's"
    return None


@contextmanager
def bounded_messages(limits: MessageLimits) -> Iterator[bool]:
    """Hypercorn's WebSockets made in the block (in this process, every
    one of them) put their messages together within ``limits``; yields
    whether they do (False: this Hypercorn is not one it was checked
    against; a warning says why, and Hypercorn's own limits apply).

    Blocks may nest: on leaving one, the limits (and the class) in force
    before it come back. Connections made meanwhile keep the limits they
    started with.
    """
    global _limits
    reason = unsupported_hypercorn()
    if reason is not None:
        log.warning(
            "messages behind Hypercorn are not bounded in fragments nor time: %s",
            reason,
        )
        yield False
        return
    before_limits = _limits
    before = [getattr(module, _CLASS) for module in _LOOKERS]
    _limits = limits
    for module in _LOOKERS:
        setattr(module, _CLASS, BoundedWSStream)
    try:
        yield True
    finally:
        _limits = before_limits
        for module, cls in zip(_LOOKERS, before, strict=True):
            setattr(module, _CLASS, cls)
