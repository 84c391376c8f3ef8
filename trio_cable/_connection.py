"""One connection's lifetime: a nursery holding its writer and subscriptions.

The task that runs :meth:`Connection.run` is the reader; it is the only
task an idle connection has. Work starts tasks in the connection's
nursery and they end when it is done: a subscription's task runs its
hooks and commands (in arrival order, so a slow action in one
subscription never delays another), and the writer runs while frames
wait for a socket that is not taking them. Nothing but the writer ever
waits on the socket, so a slow client slows nobody else.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._current import current_connection, current_user
from ._errors import ConnectionRejected, TransportClosed
from ._resume import end_subscriptions, keep, restore, take_session
from ._subscription import Subscription
from .protocol.dialects import ACTIONCABLE_V1_JSON
from .protocol.server import (
    CommandQueued,
    ServerProtocol,
    SubscriptionRequested,
    WhisperRequested,
)
from .transports.queued import wait_for_writer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Iterable

    from ._history import Replay
    from ._hub import Subscriber
    from ._options import CableOptions
    from ._presence import PresenceTracker
    from ._request import Request
    from ._sessions import Session, SessionKeeper
    from .protocol.dialects import Dialect
    from .protocol.ext import HistoryRequest
    from .protocol.server import ChannelRules
    from .transports.base import Transport

__all__ = ["Connection", "Subscription"]

log = logging.getLogger("trio_cable.connection")

_ids = itertools.count(1)

#: One name for every task a connection starts (trio would build one each).
_TASK_NAME: Final = "trio_cable.connection"
#: How far past max_outbox_frames/bytes a backlog may grow while the
#: client still takes writes (the server is busy, the client is not slow).
OUTBOX_SLACK: Final = 4


class ConnectionHost(Protocol):
    """What a connection needs of its cable (a :class:`~trio_cable.Cable`)."""

    options: CableOptions
    connect_hook: Callable[[Request], Any] | None
    sessions: SessionKeeper
    presence_tracker: PresenceTracker

    def channel_rules(self, name: str) -> ChannelRules | None:
        """The rules of channel ``name`` (``source``: the class)."""

    def channel_names(self) -> Collection[str]: ...

    def register(self, conn: Connection) -> None: ...

    def unregister(self, conn: Connection) -> None: ...

    def count(self, name: str, n: int = 1) -> None: ...

    def stream_added(self, stream: str, subscriber: Subscriber) -> None: ...

    def stream_removed(self, stream: str, subscriber: Subscriber) -> None: ...

    async def streams_live(self, streams: Iterable[str]) -> None:
        """Wait until broadcasts to ``streams`` reach this process."""

    async def read_history(
        self, streams: Iterable[str], request: HistoryRequest
    ) -> Replay | None: ...

    def broadcast_sync(self, stream: str, data: Any) -> int: ...

    def whisper(self, stream: str, payload: str, sender: Subscriber) -> int: ...


class Connection:
    """One client socket; :meth:`run` is its whole lifetime.

    ``identity`` is what the cable's connect hook returned.

    The task running :meth:`run` is the reader; the connection's nursery
    holds everything else, started only while there is work: a writer
    while frames wait for the socket, a task per subscription while it
    has commands or hooks to run. An idle connection is one task.

    Frames leave one way: the transport takes each at once, in the
    caller's task (``write_nowait``), so a broadcast on the direct
    transport reaches the socket with no task switch; the writer runs
    only while frames wait (``flush``). What waits is bounded: past
    ``max_outbox_frames`` or ``max_outbox_bytes`` the client is too slow.
    """

    # Slots: one of these per open socket, tens of thousands per process.
    __slots__ = (
        "_close",
        "_nursery",
        "_open",
        "_said",
        "_scope",
        "_told",
        "_writer_ended",
        "_writer_on",
        "cable",
        "host",
        "id",
        "identity",
        "options",
        "protocol",
        "ready",
        "request",
        "sid",
        "transport",
    )

    def __init__(
        self,
        cable: ConnectionHost,
        transport: Transport,
        request: Request,
        dialect: Dialect = ACTIONCABLE_V1_JSON,
    ) -> None:
        self.id = f"{next(_ids):x}"
        #: The cable, seen as what a connection needs of it.
        self.cable = self.host = cable
        self.options = cable.options
        self.transport = transport
        self.request = request
        self.identity: Any = None
        self.ready = False
        #: The session id the extended protocol's welcome carries.
        self.sid = secrets.token_urlsafe(12) if dialect.extended else ""
        self.protocol = ServerProtocol(
            dialect,
            cable.options.protocol,
            send=self.enqueue,
            host=cable,
            id=self.id,
            now=trio.current_time(),
        )
        # The nursery's own scope, once run() opens it: cancelling it ends
        # the connection (no second scope per connection).
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._close: tuple[str, bool] | None = None
        self._open = True  # the transport is open
        self._writer_on = False  # a writer task is running
        self._writer_ended: trio.Event | None = None  # made if someone waits
        self._said = False  # the disconnect frame was handed to the transport
        self._told = False  # ...and our close frame after it

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called (the socket may still be open)."""
        return self._close is not None

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """The subscriptions open on this connection, by identifier."""
        # Built on demand: the protocol's map is the one kept per socket.
        return {
            identifier: record.owner
            for identifier, record in self.protocol.subscriptions.items()
        }

    def __repr__(self) -> str:
        return f"<Connection {self.id} {len(self.subscriptions)} subscriptions>"

    # -- tasks -----------------------------------------------------------------

    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Start ``fn`` in this connection's nursery (if it still has one)."""
        if self._nursery is not None:
            self._nursery.start_soon(fn, name=_TASK_NAME)

    # -- output ----------------------------------------------------------------

    def enqueue(self, frame: str) -> None:
        """Send a frame after those already queued; never blocks."""
        if self._close is not None or not self._open:
            return  # closing: nothing more but the disconnect frame
        transport = self.transport
        try:
            backlog = transport.write_nowait(frame)
        except TransportClosed:
            self._lost()
            return
        if backlog:
            options = self.options
            over = max(
                backlog / options.max_outbox_bytes,
                transport.backlog_frames / options.max_outbox_frames,
            )
            # Too slow is what the client leaves unread: a backlog past the
            # limits while its socket takes no more. A backlog that waits
            # only for a busy server's writer may grow OUTBOX_SLACK times.
            if over > 1 and (over > OUTBOX_SLACK or transport.stalled()):
                self._too_slow()
            elif not transport.hand_off(self._start_writer):
                self._start_writer()

    def error(self, reason: str, message: str, identifier: str | None = None) -> None:
        """Report a protocol error to the client and the log; carry on."""
        self.protocol.error(reason, message, identifier)

    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None:
        """Send ``disconnect`` after what is queued, then close the socket."""
        if self._close is not None:
            return
        self._close = (reason, reconnect)
        transport = self.transport
        if (
            self._nursery is not None
            and not self._writer_on
            and not transport.backlog_frames
        ):
            # Nothing waits for the socket: say why and start the close
            # handshake now, with no task; the reader sees the reply.
            try:
                self._say_why()
                backlog = transport.close_nowait()
            except TransportClosed:
                self._lost()
                return
            self._told = True
            # A client that never answers is cut off after close_timeout.
            self._cut_off_after_close_timeout()
            if backlog:
                self._start_writer()
            return
        self._start_writer()

    def _say_why(self) -> None:
        reason, reconnect = self._close or ("server_restart", True)
        self._said = True
        self.transport.write_nowait(
            self.protocol.dialect.disconnect(reason, reconnect=reconnect)
        )

    def _cut_off_after_close_timeout(self) -> None:
        if self._scope is not None:
            deadline = trio.current_time() + self.options.close_timeout
            self._scope.deadline = min(self._scope.deadline, deadline)

    def _start_writer(self) -> None:
        if not self._writer_on and self._nursery is not None:
            self._writer_on = True
            self._nursery.start_soon(self._writer, name=_TASK_NAME)

    def _lost(self) -> None:
        """The socket broke under a write: end the connection."""
        self._open = False
        if self._scope is not None:
            self._scope.cancel()

    def _too_slow(self) -> None:
        if self._close is not None:
            return
        options = self.options
        self.host.count("too_slow")
        self.host.count("frames_dropped", self.transport.backlog_frames)
        log.warning(
            "conn %s: outbound queue full (%d frames or %d bytes); "
            "disconnecting as too_slow",
            self.id,
            options.max_outbox_frames,
            options.max_outbox_bytes,
        )
        # Drop what it has not read: memory is freed now, and the writer
        # sends the disconnect frame next if the client reads at all.
        self.transport.drop_backlog()
        self.close("too_slow")
        # If it never reads again, give up on it after close_timeout.
        self._cut_off_after_close_timeout()

    async def _writer(self) -> None:
        """Write until nothing waits; then, if closing, say why and close."""
        transport = self.transport
        try:
            await transport.flush()
            if self._close is not None and not self._told:
                self._say_why()
                await transport.flush()
                with trio.move_on_after(self.options.close_timeout):
                    await transport.close()
                self._lost()
        except TransportClosed:
            # Gone, or our close handshake ran to its end in flush() (a
            # queued transport): either way the reader is ours to end.
            self._lost()
        finally:
            self._writer_on = False
            if self._writer_ended is not None:
                self._writer_ended.set()

    async def _stop_writer(self, cut_off: float) -> None:
        """Wait for the (cancelled) writer until ``cut_off`` (or while its socket
        takes writes), then close the socket under it: Hypercorn's sends ignore
        cancellation, and would hold the connection while the client does not read."""
        self._writer_ended = ended = trio.Event()
        limit = cut_off + self.options.close_timeout  # if it still takes writes
        with trio.CancelScope(shield=True):
            await wait_for_writer(ended, self.transport.stalled, cut_off, limit)
        if self._writer_on:
            log.info("conn %s: its socket does not take writes; cut off", self.id)
            self._open = False
            with trio.CancelScope(shield=True):
                await self.transport.aclose()

    # -- the lifetime ----------------------------------------------------------

    async def run(self) -> None:
        """Serve this connection until the client leaves or we close it.

        Cancellation: every subscription ends (``unsubscribed()`` runs,
        shielded and bounded), what is still queued for the client is
        dropped (the frame being written is finished), it is sent
        ``disconnect`` with reason ``server_restart``, and the socket is
        closed, all within ``close_timeout`` (longer only while a write
        under way still goes out). (A dropped extended client's subscriptions are
        kept in its session instead: see ``_sessions``.)
        """
        cable = self.cable
        cable.register(self)
        # path only: query strings and headers can carry tokens (read only
        # if it is logged: two lookups in the scope and a tuple per connect)
        if log.isEnabledFor(logging.INFO):
            request = self.request
            log.info("conn %s: open %s from %s", self.id, request.path, request.client)
        kept: Session | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                extended = self.protocol.dialect.extended
                if cable.connect_hook is not None or extended:
                    # The handshake's answer (a transport may hold it for
                    # the welcome) must not wait for a hook or a session.
                    with contextlib.suppress(TransportClosed):
                        await self.transport.flush()
                # (Only extended clients resume sessions: no coroutine else.)
                session = await take_session(self) if extended else None
                if session is not None:
                    self.identity = session.identity  # no connect hook
                elif not await self._authenticate():
                    return
                # Inherited by this connection's tasks (and their threads)
                # only: each connection runs in a task of its own.
                current_user.set(self.identity)
                current_connection.set(self)
                self._nursery = nursery
                try:
                    restored = None
                    if session is not None:
                        restored = await restore(self, session)
                    self.protocol.welcome(self.sid, restored)
                    if self._close is not None:  # closed before it opened
                        self._start_writer()
                    self.ready = True
                    # The reader, inline (a frame less per connection); its
                    # methods are looked up per frame, not held (two bound
                    # methods, 128 B for every idle connection).
                    transport = self.transport
                    while True:
                        try:
                            frame = await transport.receive()
                        except TransportClosed:
                            self._open = False
                            break
                        self._handle(frame)
                finally:
                    # The client left, or we are cancelled: end every
                    # subscription now (each runs unsubscribed()).
                    self.ready = False
                    nursery.cancel_scope.cancel()
                    kept = end_subscriptions(self, self._close)
                    if self._writer_on:
                        # Past its close deadline already (too slow) or
                        # not (a shutdown): then one close_timeout more.
                        now = trio.current_time()
                        await self._stop_writer(
                            min(
                                max(now, nursery.cancel_scope.deadline),
                                now + self.options.close_timeout,
                            )
                        )
                    # Nothing new starts from here on: the nursery
                    # closes when these last tasks end.
                    self._nursery = None
        finally:
            self.ready = False
            self._nursery = None
            try:
                if kept is not None:  # once no task of ours touches it
                    await keep(self, kept)
                await self._finish()
            finally:
                cable.unregister(self)
            log.info(
                "conn %s: closed (%s)",
                self.id,
                self._close[0] if self._close else "client left",
            )

    async def _authenticate(self) -> bool:
        hook = self.cable.connect_hook
        if hook is None:
            return True
        try:
            if inspect.iscoroutinefunction(hook):
                self.identity = await hook(self.request)
            else:
                self.identity = await trio.to_thread.run_sync(hook, self.request)
        except ConnectionRejected as exc:
            self.host.count("connect_hook_refused")
            log.info("conn %s: connection rejected: %s", self.id, exc.reason)
            self._close = (exc.reason, exc.reconnect)
            return False
        except Exception:
            log.exception("conn %s: connect hook failed", self.id)
            self._close = ("server_error", True)
            return False
        return True

    async def _finish(self) -> None:
        """Tell the client why (if the socket is still open) and close it."""
        if not self._open:
            return
        self._open = False
        transport = self.transport
        scope = self._scope
        cut_off = scope is not None and trio.current_time() >= scope.deadline
        if self._told or cut_off:
            # Said, and the close handshake has had its time; or cut off
            # (too slow) after its close_timeout: no second one.
            await transport.aclose()
            return
        # One close_timeout for the goodbye and the close together: a client
        # that stopped reading would otherwise hold each up in turn.
        close_timeout = self.options.close_timeout
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + close_timeout
            if not self._said:  # never twice, nor after a write cut off
                with contextlib.suppress(TransportClosed):
                    # A backlog means the client is behind, or this process
                    # is (a storm): either way the goodbye matters more. Every
                    # frame of it costs CPU a busy shutdown needs for goodbyes.
                    transport.drop_backlog()
                    self._say_why()
                    await transport.flush()
            await transport.close()

    # -- commands --------------------------------------------------------------

    def _handle(self, frame: str | bytes) -> None:
        """One client frame: the protocol answers it, and here is only the
        work it makes for the channel layer."""
        event = self.protocol.receive(frame, trio.current_time())
        if event is None:
            return
        record = event.subscription
        if isinstance(event, CommandQueued):
            record.owner.start()
        elif isinstance(event, WhisperRequested):
            record.owner.whisper(event.payload)
        elif isinstance(event, SubscriptionRequested):
            record.owner = sub = Subscription(self, record, event.params, event.history)
            sub.start()
        else:
            record.owner.end()

    def forget(self, sub: Subscription) -> None:
        self.protocol.forget(sub.record)
