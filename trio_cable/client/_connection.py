"""The trio driver of :class:`~trio_cable.protocol.client.ClientProtocol`.

One :class:`ClientConnection` per client, across reconnects: the protocol
machine, the WebSocket of the moment (``None`` while disconnected), every
identifier's :class:`~._subscription.Entry`, and the client's lifetime
(:meth:`~ClientConnection.stop`, :meth:`~ClientConnection.interruptible`).
The socket's own lifetime is :mod:`._session`'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .._errors import (
    ClientError,
    ConnectionLost,
    SubscriptionRejected,
    SubscriptionTimeout,
)
from ..protocol.client import (
    ClientProtocol,
    Confirmed,
    ErrorReported,
    HistoryConfirmed,
    HistoryRejected,
    Received,
    Rejected,
    Replied,
    Welcome,
    make_identifier,
)
from ._events import (
    Connected,
    Disconnected,
    HistoryLost,
    Message,
    Recovered,
    ServerError,
)
from ._handshake import Target, header_list
from ._options import ClientOptions
from ._subscription import Entry, Inbox, PendingCall, Subscription

__all__ = ["ClientConnection"]

log = logging.getLogger("trio_cable.client")

SubscriptionEvent = (
    Confirmed
    | Rejected
    | Received
    | Replied
    | ErrorReported
    | HistoryConfirmed
    | HistoryRejected
)


class ClientConnection:
    """What a :class:`~trio_cable.client.CableClient` keeps across
    connections (see the module docstring)."""

    def __init__(self, url: str, options: ClientOptions) -> None:
        self.url = url
        self.options = options
        self.target = Target.parse(url)
        self.headers = header_list(options.headers, options.cookies, self.target.origin)
        self.protocol = ClientProtocol(
            subscribe_retry=options.subscribe_retry, extended=options.extended
        )
        self.entries: dict[str, Entry] = {}
        self.ws: WebSocketConnection | None = None
        self.reconnects = 0
        self._next_ref = 0  # calls' tags, unique across reconnects
        self.disconnect_reason: str | None = None
        self.ever_connected = False
        self.stopping = False
        self._changed = trio.Event()
        self._due = trio.Event()  # wakes the subscribe re-sender
        self._scopes: set[trio.CancelScope] = set()

    # -- subscriptions -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, params: dict[str, Any]
    ) -> AsyncIterator[Subscription]:
        """See :meth:`~trio_cable.client.CableClient.subscribe`."""
        identifier = make_identifier(channel, params)
        entry = self.entries.get(identifier)
        if entry is None:
            entry = self.entries[identifier] = Entry(self.protocol.add(identifier))
            self._due.set()
        options = self.options
        inbox = Inbox(identifier, options.buffer_size, options.overflow)
        sub = Subscription(
            self.send_message,
            self.call,
            self.whisper,
            entry,
            channel,
            dict(params),
            inbox,
            options.subscribe_timeout,
            send_frame=self.send_frame,
        )
        entry.subs.append(sub)
        if entry.confirmed:
            inbox.put(Connected(reconnected=False))
        try:
            with trio.move_on_after(options.subscribe_timeout) as waiting:
                await self.wait_for(lambda: entry.confirmed or bool(entry.rejected))
            if entry.rejected is not None:
                raise entry.rejected
            if waiting.cancelled_caught:
                raise SubscriptionTimeout(identifier, options.subscribe_timeout)
            yield sub
        finally:
            entry.detach(sub, ClientError(f"the subscription was left: {identifier}"))
            if not entry.subs and self.entries.get(identifier) is entry:
                del self.entries[identifier]
                await self._unsubscribe(self.protocol.remove(entry.state))

    async def send_frame(self, entry: Entry, frame: str) -> None:
        """Send a command of the subscription's other than ``message`` (a
        presence command), as :meth:`send_message` sends one."""
        await self.send_message(entry, {}, frame=frame)

    async def send_message(
        self,
        entry: Entry,
        data: dict[str, Any],
        call: PendingCall | None = None,
        *,
        frame: str | None = None,
    ) -> None:
        """Send once connected and confirmed; again on the next connection
        if the socket closed under it. ``call`` waits for its reply from
        the moment its frame goes out (the reply may beat ``send`` back)."""
        ref = None
        if call is not None:
            ref = self._next_ref = self._next_ref + 1
        if frame is None:
            frame = self.protocol.encode_message(entry.state, data, ref)
        while True:
            await self.wait_for(lambda: self._ready(entry) or bool(entry.rejected))
            if entry.rejected is not None:
                raise entry.rejected
            if self.entries.get(entry.identifier) is not entry:
                raise ClientError(f"not subscribed: {entry.identifier}")
            ws = self.ws
            assert ws is not None
            if ref is not None and call is not None:
                entry.calls[ref] = call
            try:
                await ws.send_message(frame)
                return
            except ConnectionClosed:  # not sent: send it on the next connection
                if ref is not None:
                    entry.calls.pop(ref, None)
                if call is not None and call.settled:
                    return  # the loss already ended the call: never run it later
                await self.wait_for(partial(self._replaced, ws))

    async def whisper(self, entry: Entry, data: Any) -> None:
        """See :meth:`Subscription.whisper`."""
        await self.wait_for(lambda: self._ready(entry) or bool(entry.rejected))
        if entry.rejected is not None:
            raise entry.rejected
        if self.entries.get(entry.identifier) is not entry:
            raise ClientError(f"not subscribed: {entry.identifier}")
        frame = self.protocol.encode_whisper(entry.state, data)
        if frame is None:
            raise ClientError(
                f"{self.url} does not speak actioncable-v1-ext-json: no whispers"
            )
        ws = self.ws
        assert ws is not None
        with contextlib.suppress(ConnectionClosed):  # lost: never late
            await ws.send_message(frame)

    async def call(self, entry: Entry, sub: Subscription, data: dict[str, Any]) -> Any:
        """See :meth:`Subscription.call`."""
        call = PendingCall(sub, str(data.get("action")))
        try:
            await self.send_message(entry, data, call)
            return await call.wait()
        finally:
            for ref, waiting in list(entry.calls.items()):
                if waiting is call:  # cancelled or timed out: forget it
                    del entry.calls[ref]

    def _replaced(self, ws: WebSocketConnection) -> bool:
        return self.ws is not ws

    def _ready(self, entry: Entry) -> bool:
        return self.ws is not None and entry.confirmed

    async def _unsubscribe(self, frame: str | None) -> None:
        ws = self.ws
        if ws is None or frame is None:
            return
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self.options.close_timeout),
            contextlib.suppress(ConnectionClosed),
        ):
            await ws.send_message(frame)

    async def resubscribe(self, ws: WebSocketConnection) -> None:
        """Send ``subscribe`` for everything unanswered, again every
        ``subscribe_retry`` (the official client's SubscriptionGuarantor);
        runs beside the reader while ``ws`` is open."""
        while True:
            self._due = trio.Event()
            for frame in self.protocol.subscribes_due(trio.current_time()):
                with contextlib.suppress(ConnectionClosed):
                    await ws.send_message(frame)
            next_due = self.protocol.next_due()
            if next_due is None:
                await self._due.wait()
            else:
                with trio.move_on_at(next_due):
                    await self._due.wait()

    # -- state changes ---------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def welcomed(self, ws: WebSocketConnection, welcome: Welcome) -> None:
        if self.ever_connected:
            self.reconnects += 1
            log.info(
                "reconnected to %s (%d)%s",
                self.url,
                self.reconnects,
                " and resumed the session" if welcome.restored else "",
            )
        self.ever_connected = True
        self.ws = ws
        for identifier in welcome.restored:
            self.entries[identifier].put(Connected(reconnected=True, restored=True))
        self._due.set()
        self._notify()

    def disconnected(self, reason: str, reconnecting: bool) -> None:
        self.ws = None
        self.disconnect_reason = reason
        for state in self.protocol.connection_lost():
            self.entries[state.identifier].put(Disconnected(reason, reconnecting))
        # A reply never crosses connections: whatever was sent is answered
        # on this one or not at all.
        for entry in self.entries.values():
            if entry.calls:
                entry.fail_calls(ConnectionLost(reason))
        self._notify()

    def dispatch(self, event: SubscriptionEvent) -> None:
        """Hand a subscription's event to its consumers."""
        if isinstance(event, ErrorReported):
            if event.identifier is None:
                log.warning("server error %s: %s", event.reason, event.message)
                return
            log.info(
                "server error %s: %s (%s)",
                event.reason,
                event.message,
                event.identifier,
            )
            self.entries[event.identifier].put(ServerError(event.reason, event.message))
        elif isinstance(event, Received):
            self.entries[event.identifier].put(Message(event.message))
        elif isinstance(event, Replied):
            self.entries[event.identifier].replied(event.ref, event.result, event.error)
        elif isinstance(event, HistoryConfirmed):
            self.entries[event.identifier].put(Recovered())
        elif isinstance(event, HistoryRejected):
            log.warning("history lost: %s missed messages", event.identifier)
            self.entries[event.identifier].put(HistoryLost())
        elif isinstance(event, Confirmed):
            self.entries[event.identifier].put(Connected(event.reconnected))
            self._notify()
        else:
            entry = self.entries.pop(event.identifier)
            entry.reject(
                SubscriptionRejected(event.identifier, event.reason, event.message)
            )
            self._notify()

    # -- the client's lifetime ---------------------------------------------------------

    def stop(self) -> None:
        self.stopping = True
        for scope in self._scopes:
            scope.cancel()

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[trio.CancelScope]:
        # The client's own tasks are shielded from outside cancellation (so
        # the socket can still be closed properly); stop() cancels these.
        with trio.CancelScope() as scope:
            if self.stopping:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)
