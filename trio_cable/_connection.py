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
import math
from typing import TYPE_CHECKING, Any, Final, cast

import trio

from ._channel import Channel, refusal
from ._current import current_connection, current_user
from ._errors import ConnectionRejected, ProtocolError
from ._protocol import (
    Message,
    Subscribe,
    Unsubscribe,
    encode_confirm,
    encode_disconnect,
    encode_error,
    encode_payload,
    encode_reject,
    encode_welcome,
    message_prefix,
    parse_frame,
)
from ._transport import TransportClosed

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._cable import Cable
    from ._request import Request
    from ._transport import DirectWrites, Transport

__all__ = ["Connection", "Subscription"]

log = logging.getLogger("trio_cable.connection")

_ids = itertools.count(1)

PENDING: Final = 0
LIVE: Final = 1
CLOSED: Final = 2

#: One name for every task a connection starts (trio would build one each).
_TASK_NAME: Final = "trio_cable.connection"


class Subscription:
    """One (channel, identifier) on one connection.

    It has a task only while it has work: ``subscribed()``, queued
    commands (run one at a time, in arrival order), or ``unsubscribed()``.
    An idle subscription is a few objects, not a task; the connection's
    nursery holds every task it starts.
    """

    __slots__ = (
        "_began",
        "_early",
        "_ending",
        "_finished",
        "_held",
        "_inbox",
        "_running",
        "channel",
        "confirmed",
        "connection",
        "identifier",
        "params",
        "prefix",
        "rejected",
        "state",
        "streams",
    )

    def __init__(
        self,
        connection: Connection,
        identifier: str,
        channel_class: type[Channel],
        params: dict[str, Any],
    ) -> None:
        self.connection = connection
        self.identifier = identifier
        self.params = params
        self.prefix = message_prefix(identifier)
        # A list: a subscription has one stream or a few, and an empty
        # list is a quarter of an empty set (one per subscription).
        self.streams: list[str] = []
        self.state = PENDING
        self.rejected = False
        self.confirmed = False
        self._held: list[str] | None = []
        self._early: list[str] | None = []
        self._inbox: list[object] = []
        self._running = False  # a task is working for this subscription
        self._began = False  # subscribed() has been called
        self._ending = False  # unsubscribed or disconnected: finish next
        self._finished = False
        self.channel = channel_class(self)

    # -- called by the hub -------------------------------------------------

    def deliver(self, payload: str, frames: dict[str, str]) -> None:
        if self.state != LIVE:
            if self.state == PENDING and self._early is not None:
                # A broadcast while subscribed() runs: after the confirmation.
                self._early.append(payload)
            return
        frame = frames.get(self.identifier)
        if frame is None:
            frame = frames[self.identifier] = self.prefix + payload + "}"
        self.connection.enqueue(frame)

    # -- called by the channel (in the trio thread) ------------------------

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if trio.lowlevel.in_trio_run():
            fn(*args)
        else:
            # A plain-def hook or action running in its worker thread.
            trio.from_thread.run_sync(fn, *args)

    def stream_from(self, stream: str) -> None:
        if not isinstance(stream, str):
            raise TypeError(f"stream names are strings, not {type(stream).__name__}")
        if self.state == CLOSED or stream in self.streams:
            return
        self.streams.append(stream)
        self.connection.cable._stream_added(stream, self)

    def stop_stream_from(self, stream: str) -> None:
        if stream in self.streams:
            self.streams.remove(stream)
            self.connection.cable._stream_removed(stream, self)

    def stop_all_streams(self) -> None:
        cable = self.connection.cable
        for stream in self.streams:
            cable._stream_removed(stream, self)
        self.streams.clear()

    def transmit(self, data: Any) -> None:
        payload = encode_payload(data)
        if self._held is not None:
            self._held.append(payload)
        elif self.state == LIVE:
            self.connection.enqueue(self.prefix + payload + "}")

    # -- called by the connection ------------------------------------------

    def start(self) -> None:
        """Make sure a task is working through this subscription's work."""
        if not self._running:
            self._running = True
            self.connection.spawn(self.run)

    def push(self, command: object) -> bool:
        """Queue a command for this subscription; False if too many wait."""
        if self._ending:
            return True  # unsubscribed already: dropped, as Rails does
        if len(self._inbox) >= self.connection.cable.max_pending_commands:
            return False
        self._inbox.append(command)
        self.start()
        return True

    def end(self) -> None:
        """Stop delivery now; ``unsubscribed()`` runs after queued commands."""
        if self.state != CLOSED:
            self.state = CLOSED
            self.stop_all_streams()
        self._ending = True
        self.start()

    # -- the subscription's work (a task while there is some) ----------------

    async def run(self) -> None:
        try:
            if not self._began:
                self._began = True
                if not await self._subscribe():
                    return
            inbox = self._inbox
            while inbox:
                command = inbox.pop(0)
                if isinstance(command, Subscribe):
                    self.connection.enqueue(encode_confirm(self.identifier))
                elif isinstance(command, Message):
                    await self._perform(command)
        except BaseException:
            self._ending = True  # cancelled: the connection is going away
            raise
        finally:
            self._running = False
            if self._ending:
                await self._finish()

    async def _subscribe(self) -> bool:
        """``subscribed()``, then confirm or reject; False if rejected."""
        conn = self.connection
        try:
            await _call(self.channel, "subscribed")
        except Exception:
            log.exception(
                "conn %s: %s.subscribed() failed; rejecting",
                conn.id,
                self.channel.channel_name,
            )
            self.rejected = True
        if self.rejected:
            self._held = self._early = None
            self._finished = True
            self.state = CLOSED
            self.stop_all_streams()
            conn.forget(self)
            conn.enqueue(encode_reject(self.identifier))
            log.info("conn %s: rejected %s", conn.id, self.identifier)
            self._answer_queued()
            return False
        await conn.cable._streams_live(self.streams)
        held, self._held = self._held or [], None
        early, self._early = self._early or [], None
        if self.state == PENDING:
            self.state = LIVE
            for payload in held:
                conn.enqueue(self.prefix + payload + "}")
            conn.enqueue(encode_confirm(self.identifier))
            for payload in early:
                conn.enqueue(self.prefix + payload + "}")
        self.confirmed = True
        return True

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.state = CLOSED
        self.stop_all_streams()
        self.connection.forget(self)
        if self.confirmed:
            await self._unsubscribed()

    def _answer_queued(self) -> None:
        """Answer commands that queued up behind a rejected subscribe."""
        self._ending = True
        commands, self._inbox = self._inbox, []
        for command in commands:
            if isinstance(command, Subscribe):
                self.connection.enqueue(encode_reject(self.identifier))
            elif isinstance(command, Message):
                self.connection.error(
                    "not_subscribed", "the subscription was rejected", self.identifier
                )

    async def _perform(self, message: Message) -> None:
        fn, is_async, takes_data = type(self.channel)._actions[message.action]
        args = (self.channel, message.data) if takes_data else (self.channel,)
        try:
            if is_async:
                await fn(*args)
            else:
                await trio.to_thread.run_sync(fn, *args)
        except Exception:
            log.exception(
                "conn %s: action %r of %s failed",
                self.connection.id,
                message.action,
                self.identifier,
            )
            self.connection.error(
                "server_error",
                f"action {message.action!r} failed",
                self.identifier,
            )

    async def _unsubscribed(self) -> None:
        # Shielded so a disconnect or shutdown still runs the hook, but
        # bounded so a stuck hook cannot hold shutdown up: hook_timeout
        # once it runs. A plain-def hook may first wait for a worker
        # thread (when thousands of connections end at once); that wait
        # is bounded by close_timeout, not counted against the hook.
        cable = self.connection.cable
        timed_out = False  # stays False if the deadline passes first
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = (
                trio.current_time() + cable.close_timeout + cable.hook_timeout
            )
            try:
                timed_out = await _call(
                    self.channel, "unsubscribed", cable.hook_timeout
                )
            except Exception:
                log.exception(
                    "conn %s: unsubscribed() of %s failed",
                    self.connection.id,
                    self.identifier,
                )
        if timed_out or scope.cancelled_caught:
            log.warning(
                "conn %s: unsubscribed() of %s timed out",
                self.connection.id,
                self.identifier,
            )


#: Worker threads for hooks are counted by trio's default limiter, taken
#: before the hook's own time starts (see _call); this one only passes.
_TAKEN: Final = trio.CapacityLimiter(1 << 30)


async def _call(channel: Channel, hook: str, limit: float | None = None) -> bool:
    """Run a hook (``async def`` here, plain ``def`` in a worker thread);
    True if it ran out of ``limit`` seconds and was cancelled."""
    fn = getattr(type(channel), hook)
    if inspect.iscoroutinefunction(fn):
        if limit is None:
            await fn(channel)
            return False
        with trio.move_on_after(limit) as scope:
            await fn(channel)
        return scope.cancelled_caught
    async with trio.to_thread.current_default_thread_limiter():
        with trio.move_on_after(math.inf if limit is None else limit) as scope:
            await trio.to_thread.run_sync(fn, channel, limiter=_TAKEN)
    return scope.cancelled_caught


class Connection:
    """One client socket; :meth:`run` is its whole lifetime.

    ``identity`` is what the cable's connect hook returned.

    The task running :meth:`run` is the reader; the connection's nursery
    holds everything else, started only while there is work: a writer
    while frames wait for the socket, a task per subscription while it
    has commands or hooks to run. An idle connection is one task.

    Frames leave in one of two ways. A transport that can write without
    waiting (``write_nowait``, the direct transport) gets each frame at
    once, in the caller's task: a broadcast reaches the socket with no
    task switch, and the writer runs only while the socket is full. Any
    other transport gets frames from a bounded outbox, which the writer
    drains in batches.
    """

    # Slots: one of these per open socket, tens of thousands per process.
    __slots__ = (
        "_close",
        "_direct",
        "_drop",
        "_nursery",
        "_open",
        "_outbox",
        "_outbox_bytes",
        "_rate_limited",
        "_refilled",
        "_scope",
        "_tokens",
        "_told",
        "_writer_on",
        "_writing",
        "cable",
        "id",
        "identity",
        "ready",
        "request",
        "subscriptions",
        "transport",
    )

    def __init__(self, cable: Cable, transport: Transport, request: Request) -> None:
        self.id = f"{next(_ids):x}"
        self.cable = cable
        self.transport = transport
        self.request = request
        self.identity: Any = None
        self.subscriptions: dict[str, Subscription] = {}
        self.ready = False
        #: The transport again, if it takes frames without waiting.
        self._direct: DirectWrites | None = (
            cast("DirectWrites", transport)
            if hasattr(transport, "write_nowait")
            else None
        )
        self._outbox: list[str] = []  # frames for the writer (other transports)
        self._outbox_bytes = 0  # characters in _outbox (frames are ASCII-heavy)
        self._drop = False  # too slow: stop sending what is queued
        self._tokens = float(cable.command_burst)  # rate limit bucket
        self._refilled = 0.0
        self._rate_limited = False
        # The nursery's own scope, once run() opens it: cancelling it ends
        # the connection (no second scope per connection).
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._close: tuple[str, bool] | None = None
        self._open = True  # the transport is open
        self._writer_on = False  # a writer task is running
        self._writing = False  # the writer is inside an async send
        self._told = False  # disconnect and close frame written (direct)

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
        direct = self._direct
        cable = self.cable
        if direct is not None:
            try:
                backlog = direct.write_nowait(frame)
            except TransportClosed:
                self._lost()
                return
            if backlog:
                if (
                    backlog > cable.max_outbox_bytes
                    or direct.backlog_frames > cable.max_outbox_frames
                ):
                    self._too_slow()
                else:
                    self._start_writer()
            return
        size = len(frame)
        if (
            self._outbox_bytes + size > cable.max_outbox_bytes
            or len(self._outbox) >= cable.max_outbox_frames
        ):
            self._too_slow()
            return
        self._outbox.append(frame)
        self._outbox_bytes += size
        self._start_writer()

    def error(self, reason: str, message: str, identifier: str | None = None) -> None:
        """Report a protocol error to the client and the log; carry on."""
        log.info("conn %s: %s: %s", self.id, reason, message)
        self.enqueue(encode_error(reason, message, identifier))

    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None:
        """Send ``disconnect`` after what is queued, then close the socket."""
        if self._close is not None:
            return
        self._close = (reason, reconnect)
        direct = self._direct
        if (
            direct is not None
            and self._nursery is not None
            and not self._writer_on
            and not direct.backlog_frames
        ):
            # Nothing waits for the socket: say why and start the close
            # handshake now, with no task; the reader sees the reply.
            try:
                direct.write_nowait(encode_disconnect(reason, reconnect=reconnect))
                backlog = direct.close_nowait()
            except TransportClosed:
                self._lost()
                return
            self._told = True
            # A client that never answers is cut off after close_timeout.
            if self._scope is not None:
                deadline = trio.current_time() + self.cable.close_timeout
                self._scope.deadline = min(self._scope.deadline, deadline)
            if backlog:
                self._start_writer()
            return
        self._start_writer()

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
        self.cable._count("too_slow")
        log.warning(
            "conn %s: outbound queue full (%d frames or %d bytes); "
            "disconnecting as too_slow",
            self.id,
            self.cable.max_outbox_frames,
            self.cable.max_outbox_bytes,
        )
        # Drop what it has not read: memory is freed now, and the writer
        # sends the disconnect frame next if the client reads at all.
        self._drop = True
        self._outbox = []
        self._outbox_bytes = 0
        if self._direct is not None:
            self._direct.drop_backlog()
        self.close("too_slow")
        # If it never reads again, give up on it after close_timeout.
        deadline = trio.current_time() + self.cable.close_timeout
        if self._scope is not None:
            self._scope.deadline = min(self._scope.deadline, deadline)

    async def _writer(self) -> None:
        """Write until nothing waits; then, if closing, say why and close."""
        transport = self.transport
        try:
            if self._direct is not None:
                await self._direct.flush()
            else:
                await self._drain_outbox()
            if self._close is not None and not self._told:
                reason, reconnect = self._close
                self._writing = True
                await transport.send(encode_disconnect(reason, reconnect=reconnect))
                self._writing = False
                with trio.move_on_after(self.cable.close_timeout):
                    await transport.close()
                self._lost()
        except TransportClosed:
            self._lost()
        finally:
            self._writer_on = False

    async def _drain_outbox(self) -> None:
        transport = self.transport
        while self._outbox:
            batch, self._outbox = self._outbox, []
            self._outbox_bytes = 0
            self._writing = True
            for frame in batch:
                if self._drop:  # too slow: the rest of the batch goes too
                    break
                await transport.send(frame)
            self._writing = False

    # -- the lifetime ----------------------------------------------------------

    async def run(self) -> None:
        """Serve this connection until the client leaves or we close it.

        Cancellation: every subscription ends (``unsubscribed()`` runs,
        shielded and bounded), the client is sent ``disconnect`` with
        reason ``server_restart`` and the socket is closed, all within the
        cable's ``close_timeout``.
        """
        cable = self.cable
        cable._opened(self)
        # path only: query strings and headers can carry tokens
        log.info(
            "conn %s: open %s from %s", self.id, self.request.path, self.request.client
        )
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if not await self._authenticate():
                    return
                # Inherited by this connection's tasks (and their threads)
                # only: each connection runs in a task of its own.
                current_user.set(self.identity)
                current_connection.set(self)
                self._nursery = nursery
                try:
                    self.enqueue(encode_welcome())
                    if self._close is not None:  # closed before it opened
                        self._start_writer()
                    self.ready = True
                    # The reader, inline (a frame less per connection).
                    receive = self.transport.receive
                    handle = self._handle
                    while True:
                        try:
                            frame = await receive()
                        except TransportClosed:
                            self._open = False
                            break
                        handle(frame)
                finally:
                    # The client left, or we are cancelled: end every
                    # subscription now (each runs unsubscribed()).
                    self.ready = False
                    nursery.cancel_scope.cancel()
                    for sub in list(self.subscriptions.values()):
                        sub.end()
                    # Nothing new starts from here on: the nursery
                    # closes when these last tasks end.
                    self._nursery = None
        finally:
            self.ready = False
            self._nursery = None
            try:
                await self._finish()
            finally:
                cable._closed(self)
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
        if self._told and self._direct is not None:
            # Said, and the close handshake has had its time.
            await self._direct.aclose()
            return
        reason, reconnect = self._close or ("server_restart", True)
        # One close_timeout for the goodbye and the close together: a client
        # that stopped reading would otherwise hold each up in turn.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.cable.close_timeout
            if not self._writing:  # never after a write cut off mid-frame
                with contextlib.suppress(TransportClosed):
                    frame = encode_disconnect(reason, reconnect=reconnect)
                    await self.transport.send(frame)
            await self.transport.close()

    # -- commands --------------------------------------------------------------

    def _handle(self, frame: str | bytes) -> None:
        cable = self.cable
        if not self._take_token():
            return
        if len(frame) > cable.max_frame_bytes:
            cable._count("frame_too_large")
            self.error(
                "frame_too_large",
                f"frames are limited to {cable.max_frame_bytes} bytes",
            )
            return
        if not isinstance(frame, str):
            self.error("invalid_request", "binary frames are not supported")
            return
        try:
            command = parse_frame(frame, cable.limits)
        except ProtocolError as exc:
            self.error(exc.reason, exc.message, exc.identifier)
            return
        if isinstance(command, Message):
            self._message(command)
        elif isinstance(command, Subscribe):
            self._subscribe(command)
        else:
            self._unsubscribe(command)

    def _take_token(self) -> bool:
        """The per-connection token bucket for commands."""
        cable = self.cable
        now = trio.current_time()
        self._tokens = min(
            float(cable.command_burst),
            self._tokens + (now - self._refilled) * cable.commands_per_second,
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._rate_limited = False
            return True
        cable._count("rate_limited")
        if not self._rate_limited:  # one error frame and log line per burst
            self._rate_limited = True
            self.error(
                "rate_limited",
                f"more than {cable.commands_per_second:g} commands per second",
            )
        return False

    def _subscribe(self, command: Subscribe) -> None:
        identifier = command.identifier
        existing = self.subscriptions.get(identifier)
        if existing is not None:
            # The official client re-sends subscribe until it is answered:
            # answer again, in order, without a second subscription.
            existing.push(command)
            return
        channel_class = self.cable.channels.get(command.channel)
        if channel_class is None:
            log.info("conn %s: unknown channel %r", self.id, command.channel)
            self.enqueue(encode_reject(identifier, "unknown_channel"))
            return
        limit = self.cable.max_subscriptions
        if len(self.subscriptions) >= limit:
            log.info("conn %s: subscription limit (%d) reached", self.id, limit)
            self.enqueue(encode_reject(identifier, "too_many_subscriptions"))
            return
        sub = Subscription(self, identifier, channel_class, command.params)
        self.subscriptions[identifier] = sub
        sub.start()

    def _message(self, command: Message) -> None:
        sub = self.subscriptions.get(command.identifier)
        if sub is None:
            self._not_subscribed(command.identifier)
            return
        refused = refusal(type(sub.channel), command.action)
        if refused is not None:
            self.error(refused[0], refused[1], command.identifier)
            return
        if not sub.push(command):
            self.error(
                "too_many_commands",
                f"more than {self.cable.max_pending_commands} commands pending",
                command.identifier,
            )

    def _unsubscribe(self, command: Unsubscribe) -> None:
        sub = self.subscriptions.pop(command.identifier, None)
        if sub is None:
            self._not_subscribed(command.identifier)
            return
        sub.end()

    def _not_subscribed(self, identifier: str) -> None:
        self.error("not_subscribed", "no subscription with this identifier", identifier)

    def forget(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.identifier) is sub:
            del self.subscriptions[sub.identifier]
