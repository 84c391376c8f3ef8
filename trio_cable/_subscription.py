"""One subscription's channel instance and its work, in trio.

The protocol's :class:`~trio_cable.protocol.ServerSubscription` decides
what is sent and when; this side runs the channel's code: ``subscribed()``
(then confirm or reject), the queued actions one at a time in arrival
order, and ``unsubscribed()`` at the end, in a task that exists only while
there is such work.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import trio

from ._channel import Channel, ConnectionView, action_for
from .protocol.codec import Message, encode_payload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from ._history import Replay
    from ._hub import Subscriber
    from ._options import CableOptions
    from .protocol.ext import History, HistoryRequest
    from .protocol.server import ServerSubscription

__all__ = ["Subscription"]

log = logging.getLogger("trio_cable.connection")


class StreamHost(Protocol):
    """What a subscription needs of its cable."""

    @property
    def options(self) -> CableOptions: ...
    def stream_added(self, stream: str, subscriber: Subscriber) -> None: ...
    def stream_removed(self, stream: str, subscriber: Subscriber) -> None: ...
    async def streams_live(self, streams: Iterable[str]) -> None: ...
    def whisper(self, stream: str, payload: str, sender: Subscriber) -> int: ...
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
        "_finished",
        "_history",
        "_running",
        "channel",
        "confirmed",
        "connection",
        "identifier",
        "params",
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
        self.rejected = False
        self.confirmed = False
        self._running = False  # a task is working for this subscription
        self._began = False  # subscribed() has been called
        self._ending = False  # unsubscribed or disconnected: finish next
        self._finished = False
        # The resolver (the cable) put the channel class in the rules.
        self.channel = cast("type[Channel]", record.rules.source)(self)

    # -- called by the channel (in the trio thread) ------------------------

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if trio.lowlevel.in_trio_run():
            fn(*args)
        else:
            # A plain-def hook or action running in its worker thread.
            trio.from_thread.run_sync(fn, *args)

    def stream_from(self, stream: str, whisper: bool = False) -> None:
        if not isinstance(stream, str):
            raise TypeError(f"stream names are strings, not {type(stream).__name__}")
        if self.record.closed:
            return
        if whisper:
            self.whisper_stream = stream
        if stream in self.streams:
            return
        self.streams.append(stream)
        self.connection.host.stream_added(stream, self.record)

    def stop_stream_from(self, stream: str) -> None:
        if stream == self.whisper_stream:
            self.whisper_stream = None
        if stream in self.streams:
            self.streams.remove(stream)
            self.connection.host.stream_removed(stream, self.record)

    def stop_all_streams(self) -> None:
        self.whisper_stream = None
        host = self.connection.host
        for stream in self.streams:
            host.stream_removed(stream, self.record)
        self.streams.clear()

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

    def end(self) -> None:
        """Stop delivery now; ``unsubscribed()`` runs after queued commands."""
        if not self.record.closed:
            self.record.leave()
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
        except Exception:
            log.exception(
                "conn %s: %s.subscribed() failed; rejecting",
                conn.id,
                self.channel.channel_name,
            )
            self.rejected = True
        if self.rejected:
            self._finished = self._ending = True
            self.record.reject()
            self.stop_all_streams()
            conn.forget(self)
            return False
        await conn.host.streams_live(self.streams)
        request, self._history = self._history, None
        self.record.confirm(hold=request is not None)
        self.confirmed = True
        if request is not None:
            await self._replay(request)
        return True

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
            record.history(replay)

    async def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.record.leave()
        self.stop_all_streams()
        self.connection.forget(self)
        if self.confirmed:
            await self._unsubscribed()

    async def _perform(self, message: Message | History) -> None:
        if not isinstance(message, Message):
            await self._replay(message.request)
            return
        fn, is_async, takes_data = action_for(type(self.channel), message.action)
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
        options = self.connection.host.options
        timed_out = False  # stays False if the deadline passes first
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = (
                trio.current_time() + options.close_timeout + options.hook_timeout
            )
            try:
                timed_out = await call_hook(
                    self.channel, "unsubscribed", options.hook_timeout
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
#: before the hook's own time starts (see call_hook); this one only passes.
_TAKEN: Final = trio.CapacityLimiter(1 << 30)


async def call_hook(channel: Channel, hook: str, limit: float | None = None) -> bool:
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
