"""One subscription's channel instance and its work, in trio.

The protocol's :class:`~trio_cable.protocol.ServerSubscription` decides
what is sent and when; this side runs the channel's code: ``subscribed()``
(then confirm or reject), the queued actions one at a time in arrival
order, and ``unsubscribed()`` at the end, in a task that exists only while
there is such work.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import trio

from ._channel import Channel, ConnectionView, action_for
from ._errors import ActionError, CableError
from ._filtered import Filtered
from ._hooks import call, call_hook, rescued
from ._presence import SubscriptionPresence, perform
from ._sessions import KeptSubscription
from ._timers import Timers
from .protocol.codec import Message, encode_payload
from .protocol.ext import History
from .protocol.presence import presence_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._channel import StreamCallback
    from ._history import Replay
    from ._hub import Subscriber
    from ._options import CableOptions
    from ._presence import PresenceTracker
    from .protocol.codec import Ref
    from .protocol.ext import HistoryRequest
    from .protocol.server import ServerSubscription
    from .protocol.subscription import Queued

__all__ = ["RESERVED_PREFIX", "Filtered", "Subscription"]

#: Streams of the cable's own (remote disconnect): no channel listens there.
RESERVED_PREFIX: Final = "_trio_cable:"

log = logging.getLogger("trio_cable.connection")


class StreamHost(Protocol):
    """What a subscription needs of its cable."""

    @property
    def options(self) -> CableOptions: ...
    def stream_added(self, stream: str, subscriber: Subscriber) -> None: ...
    def stream_removed(self, stream: str, subscriber: Subscriber) -> None: ...
    async def streams_live(self, streams: Iterable[str]) -> None: ...
    def count(self, name: str) -> None: ...
    def whisper(self, stream: str, payload: str, sender: Subscriber) -> int: ...
    @property
    def presence_tracker(self) -> PresenceTracker: ...
    async def read_history(
        self, streams: Iterable[str], request: HistoryRequest
    ) -> Replay | None: ...


class SubscriptionOwner(ConnectionView, Protocol):
    """What a subscription needs of its connection."""

    @property
    def host(self) -> StreamHost: ...
    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None: ...
    def forget(self, sub: Subscription) -> None: ...
    def error(
        self, reason: str, message: str, identifier: str | None = None
    ) -> None: ...


class Subscription:
    """One (channel, identifier) on one connection.

    It has a task only while it has work: ``subscribed()``, queued
    commands (run one at a time, in arrival order), or ``unsubscribed()``.
    An idle subscription is a few objects, not a task; the connection's
    nursery holds every task it starts.
    """

    __slots__ = (
        "_began",
        "_ending",
        "_filters",
        "_finished",
        "_history",
        "_running",
        "_timers",
        "channel",
        "confirmed",
        "connection",
        "identifier",
        "params",
        "presence",
        "record",
        "rejected",
        "streams",
        "whisper_stream",
    )

    def __init__(
        self,
        connection: SubscriptionOwner,
        record: ServerSubscription,
        params: dict[str, Any],
        history: HistoryRequest | None = None,
    ) -> None:
        self.connection = connection
        # What the client missed, replayed once it is confirmed.
        self._history = history
        self.record = record
        self.identifier = record.identifier
        self.params = params
        # A list: a subscription has one stream or a few, and an empty
        # list is a quarter of an empty set (one per subscription).
        self.streams: list[str] = []
        #: The stream the client may whisper on (the channel opens it).
        self.whisper_stream: str | None = None
        #: Its side of presence, once the channel opened a stream for it.
        self.presence: SubscriptionPresence | None = None
        self.rejected: bool | tuple[str, str | None] = False
        self.confirmed = False
        self._running = False  # a task is working for this subscription
        self._began = False  # subscribed() has been called
        self._ending = False  # unsubscribed or disconnected: finish next
        self._finished = False
        # None until used: most subscriptions have no callback nor timer.
        self._filters: dict[str, Filtered] | None = None
        self._timers: Timers | None = None
        # The resolver (the cable) put the channel class in the rules.
        self.channel = cast("type[Channel]", record.rules.source)(self)

    # -- called by the channel (in the trio thread) ------------------------

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if trio.lowlevel.in_trio_run():
            fn(*args)
        else:
            # A plain-def hook or action running in its worker thread.
            trio.from_thread.run_sync(fn, *args)

    def stream_from(
        self,
        stream: str,
        callback: StreamCallback | None = None,
        whisper: bool = False,
    ) -> None:
        if not isinstance(stream, str):
            raise TypeError(f"stream names are strings, not {type(stream).__name__}")
        if stream.startswith(RESERVED_PREFIX):
            raise ValueError(f"stream names starting {RESERVED_PREFIX!r} are reserved")
        if self.record.closed:
            return
        if whisper:
            self.whisper_stream = stream
        if stream in self.streams:
            return
        self.streams.append(stream)
        subscriber: Subscriber = self.record
        if callback is not None:
            subscriber = Filtered(self, callback)
            if self._filters is None:
                self._filters = {}
            self._filters[stream] = subscriber
        self.connection.host.stream_added(stream, subscriber)

    def _subscriber(self, stream: str) -> Subscriber:
        if self._filters is not None and stream in self._filters:
            return self._filters.pop(stream)
        return self.record

    def stop_stream_from(self, stream: str) -> None:
        if stream == self.whisper_stream:
            self.whisper_stream = None
        if stream in self.streams:
            self.streams.remove(stream)
            self.connection.host.stream_removed(stream, self._subscriber(stream))

    def stop_all_streams(self) -> None:
        self.whisper_stream = None
        self._end_presence(grace=False)
        host = self.connection.host
        for stream in self.streams:
            host.stream_removed(stream, self._subscriber(stream))
        self.streams.clear()

    def open_presence(self, stream: str) -> None:
        if self.record.closed or (self.presence and self.presence.stream == stream):
            return
        self._end_presence(grace=False)
        self.presence = SubscriptionPresence(
            self.connection.host, self.record, stream, self.channel.presence_events
        )

    def presence_join(self, id: str | int, info: Any) -> None:
        if self.presence is None:
            raise CableError("no presence stream: stream_from(s, presence=True)")
        self.presence.join(presence_id(id), encode_payload(info))

    def presence_leave(self) -> None:
        if self.presence is not None:
            self.presence.leave()

    def _end_presence(self, *, grace: bool) -> None:
        presence, self.presence = self.presence, None
        if presence is not None:
            presence.close(grace=grace)

    def add_timer(self, fn: Callable[[], Any], seconds: float) -> None:
        if self._ending or self.record.closed:
            return
        self._timers_made().add(fn, seconds, run=self.confirmed)

    def _timers_made(self) -> Timers:
        if self._timers is None:
            self._timers = Timers(self.connection.spawn, self._tick)
        return self._timers

    def transmit(self, data: Any) -> None:
        self.record.transmit(encode_payload(data))

    def whisper(self, payload: str) -> None:
        """The client's whisper: to every other subscriber of the whisper
        stream, in this process, never stored, never back to the sender."""
        stream = self.whisper_stream
        if stream is None:
            self.connection.error(
                "whisper_not_allowed",
                "the channel opened no stream for whispers",
                self.identifier,
            )
            return
        self.connection.host.whisper(stream, payload, self.record)

    # -- called by the connection ------------------------------------------

    def start(self) -> None:
        """Make sure a task is working through this subscription's work."""
        if not self._running:
            self._running = True
            self.connection.spawn(self.run)

    def end(self, *, grace: bool = False) -> None:
        """Stop delivery and timers now; ``unsubscribed()`` runs after
        queued commands. ``grace``: the connection ended (see _presence)."""
        self._end_presence(grace=grace)
        if not self.record.closed:
            self.record.leave()
            self.stop_all_streams()
        self._ending = True
        self._stop_timers()
        self.start()

    def _stop_timers(self) -> None:
        if self._timers is not None:
            self._timers.stop()

    def detach(self) -> KeptSubscription:
        """Keep this confirmed subscription for its session (see
        ``_sessions``): off the hub, timers stopped, no ``unsubscribed()``."""
        filters = self._filters or {}
        streams = [(s, getattr(filters.get(s), "callback", None)) for s in self.streams]
        timers = None if self._timers is None else self._timers.specs
        kept = KeptSubscription(
            self.identifier, self.params, self.channel, streams,
            self.whisper_stream, timers, self,
        )  # fmt: skip
        kept.presence_stream = self.presence.stream if self.presence else None
        self._finished = True  # its task, cancelled, must not run the hook
        self.record.leave()
        self._end_presence(grace=True)
        self.stop_all_streams()
        self._stop_timers()
        return kept

    def adopt(self, kept: KeptSubscription) -> None:
        """Take a kept subscription over, confirmed, on a new connection."""
        self.channel = kept.channel
        kept.channel._subscription = self
        self._began = self.confirmed = True
        for stream, callback in kept.streams:
            self.stream_from(stream, callback, stream == kept.whisper_stream)
        if kept.presence_stream is not None:  # its client joins again
            self.open_presence(kept.presence_stream)
        if kept.timers:
            timers = self._timers_made()
            timers.specs = list(kept.timers)
            timers.run_all()

    async def run_unsubscribed(self) -> None:
        """A kept subscription's end: its session expired unrestored."""
        await self._unsubscribed()

    # -- the subscription's work (a task while there is some) ----------------

    async def run(self) -> None:
        try:
            if not self._began:
                self._began = True
                if not await self._subscribe():
                    return
            next_command = self.record.next_command
            while (command := next_command()) is not None:
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
            await call_hook(self.channel, "subscribed")
        except Exception as exc:
            if not (await self._rescued(exc))[0]:
                log.exception(
                    "conn %s: %s.subscribed() failed; rejecting",
                    conn.id,
                    self.channel.channel_name,
                )
                self.rejected = True
        if self.rejected:
            self._finished = self._ending = True
            why = self.rejected
            self.record.reject(*(why if isinstance(why, tuple) else ()))
            self.stop_all_streams()
            conn.forget(self)
            return False
        extra = [] if self.presence is None else self.presence.live_streams
        await conn.host.streams_live([*self.streams, *extra])
        request, self._history = self._history, None
        self.record.confirm(hold=request is not None)
        self.confirmed = True
        self._start_timers()
        if request is not None:
            await self._replay(request)
        return True

    def _start_timers(self) -> None:
        """The channel's ``@periodically`` methods and the timers added
        before the confirmation start now, each in a task of its own."""
        channel = self.channel
        if channel._timers:
            declared = [
                (getattr(channel, name), every) for name, every in channel._timers
            ]
            self._timers_made().specs[:0] = declared
        if self._timers is not None:
            self._timers.run_all()

    async def _replay(self, request: HistoryRequest) -> None:
        """Send what the client missed, then what came meanwhile: live
        broadcasts are held back from before the history is read (the
        streams are live already), and those the replay carried dropped."""
        record = self.record
        record.hold()
        replay: Replay | None = None
        try:
            replay = await self.connection.host.read_history(self.streams, request)
        except Exception:
            log.exception(
                "conn %s: reading the history of %s failed",
                self.connection.id,
                self.identifier,
            )
        finally:
            # Also on cancellation: nothing stays held.
            record.history(replay, request.streams)

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.record.leave()
        self._end_presence(grace=True)  # a reload comes back meanwhile
        self.stop_all_streams()
        self.connection.forget(self)
        if self.confirmed:
            await self._unsubscribed()

    async def _perform(self, message: Queued) -> None:
        """Run one action; a call (``ref`` set) gets its return value or
        its error back, after whatever the action transmitted. An error is
        the channel's ``rescue_from`` handler's to answer first (a call
        then gets what the handler returned). A ``history`` command (the
        extended protocol) replays instead."""
        if isinstance(message, History):
            await self._replay(message.request)
            return
        if not isinstance(message, Message):
            error = partial(self.connection.error, identifier=self.identifier)
            limit = self.connection.host.options.presence_info_bytes
            clients = self.channel.client_presence
            await perform(self.presence, self.record, message, clients, limit, error)
            return
        fn, is_async, takes_data = action_for(type(self.channel), message.action)
        args = (self.channel, message.data) if takes_data else (self.channel,)
        try:
            if is_async:
                result = await fn(*args)
            else:
                result = await trio.to_thread.run_sync(fn, *args)
        except ActionError as exc:  # the action's own answer: no handler
            self._fail(message.ref, exc.reason, exc.message)
            return
        except Exception as exc:
            handled, result = await self._rescued(exc)
            if not handled:
                self.connection.host.count("action_errors")
                self._failed(f"action {message.action!r}", exc, message.ref)
                return
        if message.ref is not None:
            self._reply(message, result)

    async def _tick(self, fn: Callable[[], Any], what: str) -> None:
        """One call of a timer; errors are handled like an action's."""
        try:
            await call(fn)
        except Exception as exc:
            handled, _ = await self._rescued(exc)
            if not handled:
                self._failed(what, exc)

    def _failed(self, what: str, exc: Exception, ref: Ref | None = None) -> None:
        log.error(
            "conn %s: %s of %s failed",
            self.connection.id,
            what,
            self.identifier,
            exc_info=exc,
        )
        self._fail(ref, "server_error", f"{what} failed")

    def _fail(self, ref: Ref | None, reason: str, text: str) -> None:
        if ref is None:
            self.connection.error(reason, text, self.identifier)
        else:
            self.record.reply_error(ref, reason, text)

    async def _rescued(self, exc: Exception) -> tuple[bool, Any]:
        """Whether a ``rescue_from`` handler of the channel handled ``exc``,
        and what it returned (see _hooks.rescued)."""
        where = f"conn {self.connection.id}: {self.identifier}"
        return await rescued(self.channel, exc, where, log)

    def _reply(self, message: Message, result: Any) -> None:
        assert message.ref is not None
        try:
            encoded = encode_payload(result)
        except (TypeError, ValueError) as exc:
            log.error(
                "conn %s: action %r of %s returned what JSON cannot carry: %s",
                self.connection.id,
                message.action,
                self.identifier,
                exc,
            )
            self.record.reply_error(
                message.ref,
                "invalid_result",
                f"action {message.action!r} returned a value that is not JSON",
            )
            return
        self.record.reply(message.ref, encoded)

    async def _unsubscribed(self) -> None:
        # Shielded so a disconnect or shutdown still runs the hook, but
        # bounded so a stuck hook cannot hold shutdown up: hook_timeout
        # once it runs. A plain-def hook may first wait for a worker
        # thread (when thousands of connections end at once); that wait
        # is bounded by close_timeout, not counted against the hook.
        options = self.connection.host.options
        timed_out = False  # stays False if the deadline passes first
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = (
                trio.current_time() + options.close_timeout + options.hook_timeout
            )
            # Timers were cancelled at unsubscribe; one in a worker thread
            # ends when its call returns: unsubscribed() comes after.
            if self._timers is not None:
                await self._timers.stopped()
            try:
                timed_out = await call_hook(
                    self.channel, "unsubscribed", options.hook_timeout
                )
            except Exception as exc:
                if (await self._rescued(exc))[0]:
                    return
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
