"""The Python client: talk to any Action Cable server from trio.

One WebSocket per :class:`CableClient`, every subscription multiplexed
over it, with the official JavaScript client's behaviour: subscriptions
are re-sent every 500 ms until the server answers, a connection without a
frame for 6 s counts as dead, a lost connection is reopened with capped
exponential backoff and jitter and every open subscription is subscribed
again, and a ``disconnect`` frame with ``reconnect: false`` stops for good.

::

    async with open_cable_client("ws://127.0.0.1:8000/cable") as client:
        async with client.subscribe("ChatChannel", room="general") as chat:
            await chat.perform("speak", {"message": "hi"})
            async for message in chat:
                print(message)

Lifetimes: :func:`open_cable_client` owns the socket and every task the
client runs; :meth:`CableClient.subscribe` owns one subscription. Leaving
either closes what it owns, and nothing keeps running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._errors import CableError
from ._util import single_error

__all__ = [
    "CableClient",
    "ClientError",
    "ClientEvent",
    "Connected",
    "ConnectionDenied",
    "ConnectionLost",
    "ConnectionUnauthorized",
    "Disconnected",
    "Message",
    "OverflowPolicy",
    "ServerError",
    "ServerUnreachable",
    "Subscription",
    "SubscriptionOverflow",
    "SubscriptionRejected",
    "SubscriptionTimeout",
    "backoff_delay",
    "make_identifier",
    "open_cable_client",
]

log = logging.getLogger("trio_cable.client")

SUBPROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")

OverflowPolicy = Literal["drop_oldest", "error"]


# -- errors -------------------------------------------------------------------


class ClientError(CableError):
    """Base class of the errors the client raises."""


class ServerUnreachable(ClientError):
    """No connection could be made (refused, timed out, a 5xx answer), on
    the first attempt or, when reconnecting, for longer than
    ``give_up_after``."""


class ConnectionDenied(ClientError):
    """The server refused this client and asked it not to come back: a
    ``disconnect`` frame with ``reconnect: false``, an HTTP 4xx answer to
    the handshake, or no Action Cable subprotocol selected.

    ``reason`` is the frame's reason (or ``http_<status>``); ``status`` the
    HTTP status when the handshake was refused.
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status


class ConnectionUnauthorized(ConnectionDenied):
    """The server refused the connection as ``unauthorized`` (a connect hook
    raised :class:`trio_cable.Unauthorized`, Rails'
    ``reject_unauthorized_connection``) or answered HTTP 401/403."""


class ConnectionLost(ClientError):
    """The connection dropped and the client was told not to reconnect
    (``reconnect=False``). ``reason`` says why (``server_restart``,
    ``stale``, ``closed``...)."""

    def __init__(self, reason: str):
        super().__init__(f"connection lost: {reason}")
        self.reason = reason


class SubscriptionRejected(ClientError):
    """The server answered ``reject_subscription``. ``reason`` is the frame's
    reason when the server gives one (trio_cable: ``unknown_channel``)."""

    def __init__(self, identifier: str, reason: str | None = None):
        detail = f" ({reason})" if reason else ""
        super().__init__(f"subscription rejected{detail}: {identifier}")
        self.identifier = identifier
        self.reason = reason


class SubscriptionTimeout(ClientError):
    """No confirmation or rejection within ``subscribe_timeout``. Rails
    stays silent on unknown channels, so this is how those end."""

    def __init__(self, identifier: str, timeout: float):
        super().__init__(f"no answer to subscribe within {timeout:g}s: {identifier}")
        self.identifier = identifier


class SubscriptionOverflow(ClientError):
    """With ``overflow="error"``: the consumer fell behind and ``dropped``
    messages were discarded. Raised once; the subscription goes on."""

    def __init__(self, identifier: str, dropped: int):
        super().__init__(f"{dropped} message(s) dropped: {identifier}")
        self.identifier = identifier
        self.dropped = dropped


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """Data the server sent to the subscription (transmit or broadcast)."""

    data: Any


@dataclass(frozen=True, slots=True)
class Connected:
    """The subscription is confirmed; ``reconnected`` after a reconnect
    (messages sent while it was disconnected are lost)."""

    reconnected: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection was lost; ``reconnecting`` says whether the client
    will reconnect and subscribe again."""

    reason: str
    reconnecting: bool


@dataclass(frozen=True, slots=True)
class ServerError:
    """An error frame about this subscription (trio_cable's extension: e.g.
    ``unknown_action`` after a bad :meth:`Subscription.perform`)."""

    reason: str
    message: str


ClientEvent = Message | Connected | Disconnected | ServerError


# -- helpers --------------------------------------------------------------------


def make_identifier(channel: str, params: Mapping[str, Any]) -> str:
    """The identifier string the official client sends: ``channel`` first,
    then the params in order, compact JSON."""
    return json.dumps(
        {"channel": channel, **params}, separators=(",", ":"), ensure_ascii=False
    )


def backoff_delay(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based):
    ``base * 2**attempt`` capped at ``cap``, then jittered down by up to
    half, so many clients dropped at once do not come back in lockstep."""
    delay = min(cap, base * 2.0 ** min(attempt, 30))
    return delay * (1 - 0.5 * rng())


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    resource: str
    host_header: str
    origin: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
        tls = parts.scheme == "wss"
        port = parts.port or (443 if tls else 80)
        host_header = parts.netloc.rpartition("@")[2]
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        origin = f"{'https' if tls else 'http'}://{host_header}"
        return cls(parts.hostname, port, resource, host_header, origin, tls)


class _Inbox:
    """A subscription's bounded buffer of events (see ``overflow``)."""

    def __init__(self, identifier: str, size: int, policy: OverflowPolicy) -> None:
        self.identifier = identifier
        self.size = size
        self.policy = policy
        self.items: deque[ClientEvent] = deque()
        self.dropped = 0
        self._unreported = 0  # drops not raised yet (policy "error")
        self._error: BaseException | None = None
        self._wakeup = trio.Event()

    def put(self, event: ClientEvent) -> None:
        if self._error is not None:
            return
        if len(self.items) >= self.size:
            self._drop()
        self.items.append(event)
        self._wakeup.set()

    def _drop(self) -> None:
        if self.dropped == 0 or self.policy == "error":
            log.warning("%s: consumer too slow, dropping messages", self.identifier)
        self.dropped += 1
        if self.policy == "error":
            self._unreported += len(self.items)
            self.items.clear()
        else:
            self.items.popleft()

    def fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            self._wakeup.set()

    async def get(self) -> ClientEvent:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._unreported:
                dropped, self._unreported = self._unreported, 0
                raise SubscriptionOverflow(self.identifier, dropped)
            if self.items:
                event = self.items.popleft()  # taken only once nothing can cancel
                await trio.lowlevel.cancel_shielded_checkpoint()
                return event
            if self._error is not None:
                raise self._error
            self._wakeup = trio.Event()
            await self._wakeup.wait()


class _Entry:
    """The protocol state of one identifier (shared by every
    :class:`Subscription` with that identifier)."""

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        self.subs: list[Subscription] = []
        self.confirmed = False  # on the current connection
        self.ever_confirmed = False
        self.rejected: SubscriptionRejected | None = None
        self.last_sent = -float("inf")


# -- the subscription -------------------------------------------------------------


class Subscription:
    """One subscription: perform actions on it, iterate its messages.

    Made by :meth:`CableClient.subscribe`. ``async for message in sub``
    yields the data of each message; :meth:`events` also yields
    :class:`Connected`, :class:`Disconnected` and :class:`ServerError`.

    Buffering: up to ``buffer_size`` events wait for the consumer. When it
    falls further behind, ``overflow="drop_oldest"`` (the default) drops the
    oldest (counted in :attr:`dropped`, and logged), so a live view catches
    up with the newest data and the socket never stalls; ``"error"`` drops
    everything buffered and makes the next receive raise
    :class:`SubscriptionOverflow` once.
    """

    def __init__(
        self,
        client: CableClient,
        entry: _Entry,
        channel: str,
        params: dict[str, Any],
        inbox: _Inbox,
    ) -> None:
        self._client = client
        self._entry = entry
        self._inbox = inbox
        self.channel = channel
        self.params = params

    def __repr__(self) -> str:
        return f"<Subscription {self.identifier}>"

    @property
    def identifier(self) -> str:
        """The identifier string sent to the server (and echoed back)."""
        return self._entry.identifier

    @property
    def confirmed(self) -> bool:
        """Whether the server confirmed it on the current connection."""
        return self._entry.confirmed

    @property
    def pending(self) -> int:
        """How many events wait in the buffer."""
        return len(self._inbox.items)

    @property
    def dropped(self) -> int:
        """How many events overflow dropped so far."""
        return self._inbox.dropped

    async def perform(self, action: str, data: Mapping[str, Any] | None = None) -> None:
        """Call ``action`` on the server channel with ``data`` (a JSON object).

        Waits, if need be, until the client is connected and the
        subscription confirmed (across reconnects), then hands the frame to
        the socket. Raises :class:`SubscriptionRejected` if the server
        rejected the subscription.
        """
        await self.send({**(data or {}), "action": action})

    async def send(self, data: Mapping[str, Any]) -> None:
        """Send ``data`` as is: without an ``action`` key it reaches the
        channel's ``receive`` action."""
        await self._client._send_message(self._entry, dict(data))

    async def receive(self) -> Any:
        """The next message's data (other events are skipped).

        Raises:
            SubscriptionRejected: the server rejected it on resubscribe.
            SubscriptionOverflow: with ``overflow="error"``, after drops.
        """
        while True:
            event = await self._inbox.get()
            if isinstance(event, Message):
                return event.data

    async def receive_event(self) -> ClientEvent:
        """The next event: :class:`Message`, :class:`Connected`,
        :class:`Disconnected` or :class:`ServerError`."""
        return await self._inbox.get()

    def events(self) -> _EventIterator:
        """``async for event in sub.events()``: every event, in order."""
        return _EventIterator(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        return await self.receive()


class _EventIterator:
    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def __aiter__(self) -> _EventIterator:
        return self

    async def __anext__(self) -> ClientEvent:
        return await self._sub.receive_event()


# -- the client -------------------------------------------------------------------


_Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]


class _SessionEnded(Exception):
    """A connection ended in a way the client may recover from."""

    def __init__(self, reason: str, *, welcomed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.welcomed = welcomed


class CableClient:
    """A connection to an Action Cable server; made by :func:`open_cable_client`.

    Attributes:
        url: the cable's URL.
        reconnects: how many times the client connected again after a loss.
        disconnect_reason: why the last connection ended (``None`` so far).
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        cookies: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reconnect: bool = True,
        wait_for_server: bool = False,
        give_up_after: float | None = None,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 10.0,
        stale_timeout: float = 6.0,
        connect_timeout: float = 5.0,
        close_timeout: float = 1.0,
        subscribe_timeout: float = 10.0,
        subscribe_retry: float = 0.5,
        buffer_size: int = 1024,
        overflow: OverflowPolicy = "drop_oldest",
        max_message_size: int = 1 << 20,
    ) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.url = url
        self._target = _Target.parse(url)
        self._headers = _header_list(headers, cookies, self._target.origin)
        self._ssl_context = ssl_context
        self.reconnect = reconnect
        self.wait_for_server = wait_for_server
        self.give_up_after = give_up_after
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.stale_timeout = stale_timeout
        self.connect_timeout = connect_timeout
        self.close_timeout = close_timeout
        self.subscribe_timeout = subscribe_timeout
        self.subscribe_retry = subscribe_retry
        self.buffer_size = buffer_size
        self.overflow: OverflowPolicy = overflow
        self.max_message_size = max_message_size
        self.reconnects = 0
        self.disconnect_reason: str | None = None
        self._entries: dict[str, _Entry] = {}
        self._ws: WebSocketConnection | None = None
        self._ever_connected = False
        self._changed = trio.Event()
        self._pending = trio.Event()  # wakes the subscribe re-sender
        self._stopping = False
        self._scopes: set[trio.CancelScope] = set()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<CableClient {self.url} {state}>"

    @property
    def connected(self) -> bool:
        """Whether the socket is open and the server said ``welcome``."""
        return self._ws is not None

    async def wait_connected(self) -> None:
        """Wait until the client is connected (returns at once if it is)."""
        await self._wait_for(lambda: self.connected)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, /, **params: Any
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``channel`` with ``params``; leave the block to
        unsubscribe.

        Returns once the server confirmed, waiting through reconnects; the
        subscription is re-sent every ``subscribe_retry`` seconds until
        answered (a Rails server may miss one), and subscribed again after
        every reconnect. Two subscriptions with the same channel and params
        share one server subscription; each gets every message.

        Raises:
            SubscriptionRejected: the server rejected it.
            SubscriptionTimeout: no answer within ``subscribe_timeout``.

        Cancellation: leaving the block, even cancelled, sends
        ``unsubscribe`` (bounded by ``close_timeout``) when this was the
        last subscription with that identifier.
        """
        identifier = make_identifier(channel, params)
        entry = self._entries.get(identifier)
        if entry is None:
            entry = self._entries[identifier] = _Entry(identifier)
            self._pending.set()
        inbox = _Inbox(identifier, self.buffer_size, self.overflow)
        sub = Subscription(self, entry, channel, dict(params), inbox)
        entry.subs.append(sub)
        if entry.confirmed:
            inbox.put(Connected(reconnected=False))
        try:
            with trio.move_on_after(self.subscribe_timeout) as waiting:
                await self._wait_for(lambda: entry.confirmed or bool(entry.rejected))
            if entry.rejected is not None:
                raise entry.rejected
            if waiting.cancelled_caught:
                raise SubscriptionTimeout(identifier, self.subscribe_timeout)
            yield sub
        finally:
            inbox.fail(ClientError(f"the subscription was left: {identifier}"))
            entry.subs.remove(sub)
            if not entry.subs and self._entries.get(identifier) is entry:
                del self._entries[identifier]
                await self._unsubscribe(entry)

    # -- sending ------------------------------------------------------------------

    async def _send_message(self, entry: _Entry, data: dict[str, Any]) -> None:
        frame = json.dumps(
            {
                "command": "message",
                "identifier": entry.identifier,
                "data": json.dumps(data, separators=(",", ":")),
            },
            separators=(",", ":"),
        )
        while True:
            await self._wait_for(lambda: self._ready(entry) or bool(entry.rejected))
            if entry.rejected is not None:
                raise entry.rejected
            if self._entries.get(entry.identifier) is not entry:
                raise ClientError(f"not subscribed: {entry.identifier}")
            ws = self._ws
            assert ws is not None
            try:
                await ws.send_message(frame)
                return
            except ConnectionClosed:  # not sent: send it on the next connection
                await self._wait_for(partial(self._replaced, ws))

    def _replaced(self, ws: WebSocketConnection) -> bool:
        return self._ws is not ws

    def _ready(self, entry: _Entry) -> bool:
        return self._ws is not None and entry.confirmed

    async def _send_subscribe(self, ws: WebSocketConnection, entry: _Entry) -> None:
        entry.last_sent = trio.current_time()
        frame = {"command": "subscribe", "identifier": entry.identifier}
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(json.dumps(frame, separators=(",", ":")))

    async def _unsubscribe(self, entry: _Entry) -> None:
        ws = self._ws
        if ws is None or entry.rejected is not None or entry.last_sent < 0:
            return
        frame = {"command": "unsubscribe", "identifier": entry.identifier}
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self.close_timeout),
            contextlib.suppress(ConnectionClosed),
        ):
            await ws.send_message(json.dumps(frame, separators=(",", ":")))

    # -- state changes --------------------------------------------------------------

    async def _wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()
        await trio.lowlevel.checkpoint()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _welcomed(self, ws: WebSocketConnection) -> None:
        if self._ever_connected:
            self.reconnects += 1
            log.info("reconnected to %s (%d)", self.url, self.reconnects)
        self._ever_connected = True
        self._ws = ws
        for entry in self._entries.values():
            entry.last_sent = -float("inf")
        self._pending.set()
        self._notify()

    def _disconnected(self, reason: str, reconnecting: bool) -> None:
        self._ws = None
        self.disconnect_reason = reason
        for entry in self._entries.values():
            if entry.confirmed:
                for sub in entry.subs:
                    sub._inbox.put(Disconnected(reason, reconnecting))
            entry.confirmed = False
        self._notify()

    @property
    def stopping(self) -> bool:
        """Whether the client is shutting down (its block is being left)."""
        return self._stopping

    def _stop(self) -> None:
        self._stopping = True
        for scope in self._scopes:
            scope.cancel()

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[trio.CancelScope]:
        # The client's own tasks are shielded from outside cancellation (so
        # the socket can still be closed properly); _stop() cancels these.
        with trio.CancelScope() as scope:
            if self._stopping:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    # -- the connection loop (the client's one long-lived task) ----------------------

    async def _run(self) -> None:
        """Connect, serve the connection, reconnect with backoff; until
        :meth:`_stop` or a fatal error (which ends the client)."""
        with trio.CancelScope(shield=True):
            attempt = 0
            down_since = trio.current_time()
            while not self._stopping:
                try:
                    await self._session()
                    return  # stopped
                except _SessionEnded as ended:
                    if ended.welcomed:
                        attempt, down_since = 0, trio.current_time()
                    if self.stopping:
                        return
                    self._give_up_if_needed(ended, down_since)
                    log.info("connection to %s lost (%s)", self.url, ended.reason)
                    with self._interruptible():
                        await trio.sleep(
                            backoff_delay(
                                attempt, self.reconnect_delay, self.max_reconnect_delay
                            )
                        )
                    attempt += 1

    def _give_up_if_needed(self, ended: _SessionEnded, down_since: float) -> None:
        if not self._ever_connected and not self.wait_for_server:
            raise ServerUnreachable(f"cannot connect to {self.url}: {ended.reason}")
        if self._ever_connected and not self.reconnect:
            raise ConnectionLost(ended.reason)
        limit = self.give_up_after
        if limit is not None and trio.current_time() - down_since > limit:
            raise ServerUnreachable(
                f"no connection to {self.url} for {limit:g}s: {ended.reason}"
            )

    async def _session(self) -> None:
        """One connection, from TCP connect to close. Returns when stopped;
        raises _SessionEnded to reconnect, ClientError to give up."""
        stream = await self._open_stream()
        if stream is None:
            return
        welcomed = False
        try:
            with single_error():
                # conn_nursery holds trio-websocket's reader task
                async with trio.open_nursery() as conn_nursery:
                    ws: WebSocketConnection | None = None
                    try:
                        with self._interruptible():
                            ws = await self._handshake(conn_nursery, stream)
                            welcomed = await self._serve(ws)
                    finally:
                        if ws is not None:
                            await self._close(ws)
                        conn_nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionRejected as exc:
            status = exc.status_code or 0
            if status in (401, 403):
                raise ConnectionUnauthorized(
                    "unauthorized", f"HTTP {status} from {self.url}", status=status
                ) from None
            if 400 <= status < 500:
                raise ConnectionDenied(
                    f"http_{status}", f"HTTP {status} from {self.url}", status=status
                ) from None
            raise _SessionEnded(f"HTTP {status}") from None
        except _SessionEnded as ended:
            ended.welcomed = welcomed
            self._disconnected(ended.reason, reconnecting=self.reconnect)
            raise
        except ClientError:
            self._disconnected("denied", reconnecting=False)
            raise
        finally:
            await trio.aclose_forcefully(stream)
        self._disconnected("closed", reconnecting=False)

    async def _open_stream(self) -> _Stream | None:
        target = self._target
        stream: _Stream | None = None  # stays None if stopped
        try:
            with self._interruptible(), trio.fail_after(self.connect_timeout):
                if target.tls:
                    context = self._ssl_context or ssl.create_default_context()
                    stream = await trio.open_ssl_over_tcp_stream(
                        target.host,
                        target.port,
                        ssl_context=context,
                        https_compatible=True,
                    )
                else:
                    stream = await trio.open_tcp_stream(target.host, target.port)
        except (OSError, trio.TooSlowError) as exc:
            raise _SessionEnded(_describe(exc)) from None
        return stream

    async def _handshake(
        self, nursery: trio.Nursery, stream: _Stream
    ) -> WebSocketConnection:
        target = self._target
        try:
            with trio.fail_after(self.connect_timeout):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    target.host_header,
                    target.resource,
                    subprotocols=SUBPROTOCOLS,
                    extra_headers=self._headers,
                    max_message_size=self.max_message_size,
                )
        except trio.TooSlowError:
            raise _SessionEnded("handshake timed out") from None
        if ws.subprotocol != SUBPROTOCOLS[0]:
            # What the official client does: it is not an Action Cable server.
            raise ConnectionDenied(
                "unsupported_protocol",
                f"{self.url} selected no Action Cable subprotocol",
            )
        return ws

    async def _serve(self, ws: WebSocketConnection) -> bool:
        """Read frames until the connection ends; the re-sender beside."""
        welcomed = False
        async with trio.open_nursery() as nursery:
            while True:
                timeout = self.stale_timeout if welcomed else self.connect_timeout
                with trio.move_on_after(timeout):
                    try:
                        raw = await ws.get_message()
                    except ConnectionClosed as exc:
                        code = exc.reason.code if exc.reason else None
                        raise _SessionEnded(f"closed ({code})") from None
                    if not welcomed and self._handle_frame(ws, raw):
                        welcomed = True
                        nursery.start_soon(self._resubscribe, ws)
                    elif welcomed:
                        self._handle_frame(ws, raw)
                    continue
                raise _SessionEnded("stale" if welcomed else "no welcome")

    def _handle_frame(self, ws: WebSocketConnection, raw: str | bytes) -> bool:
        """Act on one frame; True if it was the welcome."""
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("ignoring a frame that is not JSON: %.80r", raw)
            return False
        if not isinstance(frame, dict):
            return False
        kind = frame.get("type")
        if kind == "welcome":
            self._welcomed(ws)
            return True
        if kind == "ping":
            return False
        if kind == "disconnect":
            self._on_disconnect(frame)
        elif kind == "error":
            self._on_error(frame)
        else:
            self._on_subscription_frame(kind, frame)
        return False

    def _on_disconnect(self, frame: dict[str, Any]) -> None:
        reason = str(frame.get("reason") or "unknown")
        if frame.get("reconnect") is True:  # missing means false, as in Rails
            raise _SessionEnded(reason)
        if reason == "unauthorized":
            raise ConnectionUnauthorized(reason, f"{self.url}: unauthorized")
        raise ConnectionDenied(reason, f"{self.url} disconnected us: {reason}")

    def _on_error(self, frame: dict[str, Any]) -> None:
        reason = str(frame.get("reason"))
        message = str(frame.get("message", ""))
        entry = self._entries.get(str(frame.get("about", "")))
        if entry is None:
            log.warning("server error %s: %s", reason, message)
            return
        log.info("server error %s: %s (%s)", reason, message, entry.identifier)
        for sub in entry.subs:
            sub._inbox.put(ServerError(reason, message))

    def _on_subscription_frame(self, kind: Any, frame: dict[str, Any]) -> None:
        identifier = frame.get("identifier")
        entry = self._entries.get(identifier) if isinstance(identifier, str) else None
        if entry is None:
            return
        if kind == "confirm_subscription":
            if not entry.confirmed:
                entry.confirmed = True
                for sub in entry.subs:
                    sub._inbox.put(Connected(reconnected=entry.ever_confirmed))
                entry.ever_confirmed = True
                self._notify()
        elif kind == "reject_subscription":
            reason = frame.get("reason")
            entry.rejected = SubscriptionRejected(
                entry.identifier, reason if isinstance(reason, str) else None
            )
            del self._entries[entry.identifier]
            for sub in entry.subs:
                sub._inbox.fail(entry.rejected)
            self._notify()
        elif "message" in frame:  # data frames, and extensions' frames
            for sub in entry.subs:
                sub._inbox.put(Message(frame["message"]))

    async def _resubscribe(self, ws: WebSocketConnection) -> None:
        # Like the official client's SubscriptionGuarantor: send subscribe
        # for everything not yet confirmed, again every subscribe_retry.
        while True:
            self._pending = trio.Event()
            now = trio.current_time()
            waiting = [
                e
                for e in self._entries.values()
                if not e.confirmed and e.rejected is None
            ]
            for entry in waiting:
                if now - entry.last_sent >= self.subscribe_retry:
                    await self._send_subscribe(ws, entry)
            if waiting:
                next_due = min(e.last_sent for e in waiting) + self.subscribe_retry
                with trio.move_on_at(next_due):
                    await self._pending.wait()
            else:
                await self._pending.wait()

    async def _close(self, ws: WebSocketConnection) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout):
            await ws.aclose()


def _header_list(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    cookies: Mapping[str, str] | None,
    origin: str,
) -> list[tuple[bytes, bytes]]:
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if cookies:
        pairs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    if not any(name.lower() == "origin" for name, _ in pairs):
        # Rails refuses a handshake whose Origin is not allowed; a missing
        # one never is. Say what a page served by the same host would.
        pairs.append(("Origin", origin))
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "connect timed out"
    # trio's "all attempts to connect failed" hides the why in its cause
    cause = exc.__cause__
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def open_cable_client(
    url: str,
    *,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    cookies: Mapping[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    reconnect: bool = True,
    wait_for_server: bool = False,
    give_up_after: float | None = None,
    reconnect_delay: float = 0.5,
    max_reconnect_delay: float = 10.0,
    stale_timeout: float = 6.0,
    connect_timeout: float = 5.0,
    close_timeout: float = 1.0,
    subscribe_timeout: float = 10.0,
    subscribe_retry: float = 0.5,
    buffer_size: int = 1024,
    overflow: OverflowPolicy = "drop_oldest",
    max_message_size: int = 1 << 20,
) -> AsyncIterator[CableClient]:
    """Connect to the Action Cable server at ``url`` (``ws://`` or ``wss://``).

    Returns once the server said ``welcome``. Then the client keeps the
    connection: when it is lost (closed, reset, ``disconnect`` with
    ``reconnect: true``, or stale: no frame for ``stale_timeout`` seconds,
    two missed pings) it reconnects after ``backoff_delay(attempt,
    reconnect_delay, max_reconnect_delay)`` seconds and subscribes again.

    Arguments:
        headers, cookies: sent with the handshake. An ``Origin`` matching
            the URL's host is sent unless ``headers`` has one (Rails checks).
        reconnect: reconnect after a lost connection; if false, a loss
            raises :class:`ConnectionLost`.
        wait_for_server: keep trying the first connection too, instead of
            raising :class:`ServerUnreachable` at once.
        give_up_after: raise :class:`ServerUnreachable` after being
            disconnected this long (``None``: never give up).
        subscribe_timeout, subscribe_retry: see :meth:`CableClient.subscribe`.
        buffer_size, overflow: per-subscription buffer (see
            :class:`Subscription`).

    Raises:
        ServerUnreachable: no connection could be made.
        ConnectionUnauthorized, ConnectionDenied: the server refused the
            client (also later: the block is cancelled and this is raised).
        ConnectionLost: the connection was lost with ``reconnect=False``.

    Cancellation: leaving the block (or cancelling it) closes the socket
    with a close handshake bounded by ``close_timeout``; every task the
    client started has ended when it returns.
    """
    client = CableClient(
        url,
        headers=headers,
        cookies=cookies,
        ssl_context=ssl_context,
        reconnect=reconnect,
        wait_for_server=wait_for_server,
        give_up_after=give_up_after,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
        stale_timeout=stale_timeout,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        subscribe_timeout=subscribe_timeout,
        subscribe_retry=subscribe_retry,
        buffer_size=buffer_size,
        overflow=overflow,
        max_message_size=max_message_size,
    )
    with single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._run)
            try:
                await client.wait_connected()
                yield client
            finally:
                client._stop()
