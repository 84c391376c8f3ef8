"""Hypercorn's WebSocket messages held to the direct transport's limits.

Behind Hypercorn, its ``WSStream`` puts each message together from its
frames: one buffer per connection, counted in characters (text) against
``websocket_max_message_size`` (16 MiB by default), with no count of
fragments and no deadline, so a message that never ends is kept for as
long as the client likes (up to 16 Mi characters of it; an endless run
of empty fragments adds nothing to the count and is never refused, each
fragment parsed and the connection held). Hypercorn has no setting for any of
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
counted (``"message_refused"``) and logged, and the socket closed at
once (nothing more the client sent is parsed).

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
#: written against: its ``_handle_events`` is what we replace. Tested with
#: 0.18.0; 0.17.0's is the same code (its diff to 0.18.0 in that module
#: is type hints and a copy of the scope's state).
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
        # The task keeping an unfinished message's deadline, while one is.
        self._watch: trio.CancelScope | None = None

    async def handle(self, event: Any) -> None:
        if isinstance(event, StreamClosed) and self._watch is not None:
            self._watch.cancel()
        await super().handle(event)

    async def _handle_events(self) -> None:
        # Hypercorn's own, with our assembly for its buffer.
        for event in self.connection.events():
            if self._refused:
                return  # the stream is closed: the rest is not even parsed
            if isinstance(event, Message):
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
                elif self._watch is None and not self.closed:
                    self._watch = trio.CancelScope()
                    self.task_group.spawn(self._keep_deadline, self._watch)
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
        if self._refused or self.closed:
            return
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
        await self._send_wsproto_event(
            CloseConnection(code=refusal.code, reason=refusal.reason[:120])
        )
        # Then the socket, at once, as the other transports close it: not
        # after the client's answer, which comes after everything it sent
        # meanwhile (a flood of fragments, all of it parsed to find it).
        await self.send(StreamClosed(stream_id=self.stream_id))

    async def _keep_deadline(self, scope: trio.CancelScope) -> None:
        """One task per connection while a message is unfinished: past its
        deadline, even if the client sends nothing more, the message is
        refused. Cancelled when the stream closes."""
        late = False
        try:
            with scope:
                while (deadline := self._assembly.deadline) != math.inf:
                    if trio.current_time() < deadline:
                        # A message finished meanwhile and another begun:
                        # the deadline only moves later, so look again then.
                        await trio.sleep_until(deadline)
                    else:
                        late = True
                        break
        finally:
            self._watch = None
        # Outside the scope: the refusal closes the stream, which cancels
        # the scope, and the close (which tells the app) must not be.
        if late:
            await self._refuse(self._assembly.timed_out())


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
