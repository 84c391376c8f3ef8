"""The Cable: channel registry, hub, connections and the broadcast API."""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload
from urllib.parse import urlsplit

import trio

from ._broker import IN_PROCESS, Broker, open_broker
from ._channel import Channel, rules_for
from ._errors import CableError
from ._history import HistoryConfig, HistoryPolicy, HistoryStore, Replay
from ._hub import Hub, Subscriber
from ._options import DEFAULT_REDIS_PREFIX, CableOptions
from ._redis import RedisBridge
from ._registry import ConnectionSet
from ._util import single_error
from .protocol.codec import encode_payload, encode_ping

if TYPE_CHECKING:
    from ._connection import Connection
    from ._request import Request
    from .protocol.ext import HistoryRequest
    from .protocol.server import ChannelRules

__all__ = ["Cable", "ConnectHook"]

log = logging.getLogger("trio_cable.cable")

C = TypeVar("C", bound=type[Channel])

#: ``async def hook(request) -> identity`` (or a plain ``def``, run in a
#: thread). Return the connection's identity (``None`` for anonymous) or
#: raise :class:`~trio_cable.Unauthorized` to refuse the connection.
ConnectHook = Callable[["Request"], Awaitable[Any]] | Callable[["Request"], Any]


class Cable:
    """The pub/sub hub every connection and channel of an app shares.

    Create one at import time, register channels on it, then run it
    (:meth:`running`, or let :func:`~trio_cable.serve_cable` or the ASGI
    app do that) and serve connections.

    Arguments:
        connect: the connect hook (see :data:`ConnectHook`); also settable
            with the :meth:`connect` decorator.
        options: a :class:`CableOptions` holding the options below (any
            keyword argument given besides overrides its field).
        ping_interval: seconds between ``ping`` frames (3, like Rails;
            the official client calls a connection stale after 6).
        max_outbox_frames: frames queued for one client before it counts
            as too slow: it is sent ``disconnect`` (reason ``too_slow``,
            reconnect true) and closed, and no broadcaster ever waits.
        max_pending_commands: commands queued for one subscription while
            an earlier action runs; more are refused (``too_many_commands``).
        max_subscriptions: subscriptions per connection.
        hook_timeout: how long ``unsubscribed()`` may run at disconnect.
        close_timeout: bound on the close handshake at disconnect/shutdown.
        redis_url, redis_prefix, redis_buffer: cross-process broadcasts
            through Redis (see docs/scaling.md).
        allowed_origins: browser origins allowed to connect: exact origins
            (``"https://example.com"``) or patterns
            (``"https://*.example.com"``), or ``"*"`` for any. By default
            only the same origin as the ``Host`` header. Handshakes without
            an ``Origin`` header (non-browser clients) are allowed. Refused
            handshakes get HTTP 403 before any WebSocket is accepted.
        max_connections: open connections per process; beyond it
            handshakes get HTTP 503.
        max_frame_bytes: largest client frame; larger ones are refused
            with ``frame_too_large``.
        max_identifier_bytes: longest identifier (``identifier_too_large``).
        max_json_depth: deepest nesting of params and data (``json_too_deep``).
        commands_per_second, command_burst: a token bucket per connection;
            commands beyond it are refused with ``rate_limited``.
        max_outbox_bytes: bytes queued for one client before the slow-client
            policy runs (besides ``max_outbox_frames``).
        extended_protocol: speak AnyCable's ``actioncable-v1-ext-json``
            (session ids, history, recovery) to clients that offer it
            (default true); false refuses clients that offer only it.
        pong_timeout: seconds an extended-protocol client may stay silent
            (no pong, no frame at all) before it is sent ``disconnect``
            with reason ``no_pong`` (reconnect true) and closed; checked
            at each ping. None (the default): never.
        history: the streams that keep history, for recovery (see
            docs/reliability.md): names or ``fnmatch`` patterns, or a
            mapping of them to a :class:`HistoryPolicy` (None: the
            default one). Nothing keeps history by default.
        history_limit, history_ttl: the default policy: the last
            ``history_limit`` broadcasts of a stream (100), none older than
            ``history_ttl`` seconds (300).
    """

    def __init__(
        self,
        *,
        connect: ConnectHook | None = None,
        options: CableOptions | None = None,
        **kwargs: Any,
    ) -> None:
        if options is None:
            options = CableOptions(**kwargs)
        elif kwargs:
            options = dataclasses.replace(options, **kwargs)
        #: Every option, frozen (the keyword arguments above).
        self.options = options
        #: Carries broadcasts to other processes while the cable runs.
        self.broker: Broker = IN_PROCESS
        self.channels: dict[str, type[Channel]] = {}
        self.connect_hook = connect
        self.hub = Hub()
        config = options.history_config
        if config is not None:
            self.hub.history = HistoryStore(config)
        self.counters: Counter[str] = Counter()
        self._connections: ConnectionSet[Connection] = ConnectionSet()
        self._token: trio.lowlevel.TrioToken | None = None

    # Read-only views of the options most code reads.
    @property
    def ping_interval(self) -> float:
        return self.options.ping_interval

    @property
    def close_timeout(self) -> float:
        return self.options.close_timeout

    @property
    def hook_timeout(self) -> float:
        return self.options.hook_timeout

    @property
    def commands_per_second(self) -> float:
        return self.options.commands_per_second

    @property
    def command_burst(self) -> int:
        return self.options.command_burst

    # -- handshakes ----------------------------------------------------------

    def refuse_handshake(self, request: Request) -> tuple[int, str] | None:
        """Why the handshake must be refused, as (HTTP status, reason), or None.

        Every transport asks this before it accepts a WebSocket: 403 for a
        browser origin that is not allowed, 503 when ``max_connections``
        are open.
        """
        origin = request.headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, request):
            self.count("origin_refused")
            log.warning(
                "refused a handshake from origin %r (not in allowed_origins)", origin
            )
            return 403, "origin not allowed"
        if len(self._connections) >= self.options.max_connections:
            self.count("connections_refused")
            log.warning(
                "refused a handshake: %d connections open",
                self.options.max_connections,
            )
            return 503, "too many connections"
        return None

    def _origin_allowed(self, origin: str, request: Request) -> bool:
        allowed = self.options.allowed_origins
        if allowed is None:
            host = request.headers.get("host")
            netloc = urlsplit(origin).netloc
            return host is not None and netloc.lower() == host.lower()
        return any(
            pattern == "*" or fnmatch.fnmatchcase(origin.lower(), pattern.lower())
            for pattern in allowed
        )

    # -- registration --------------------------------------------------------

    @overload
    def channel(self, cls: C) -> C: ...
    @overload
    def channel(self, *, name: str) -> Callable[[C], C]: ...

    def channel(self, cls: C | None = None, *, name: str | None = None) -> Any:
        """Register a :class:`Channel` subclass (a class decorator).

        Clients subscribe with its class name, or ``name`` if given.
        """

        def register(cls: C) -> C:
            if not (isinstance(cls, type) and issubclass(cls, Channel)):
                raise TypeError(f"{cls!r} is not a Channel subclass")
            channel_name = name or cls.channel_name
            if name is not None:
                cls.channel_name = name
            if channel_name in self.channels and self.channels[channel_name] is not cls:
                raise ValueError(f"a channel named {channel_name!r} is registered")
            self.channels[channel_name] = cls
            return cls

        return register if cls is None else register(cls)

    def connect(self, hook: ConnectHook) -> ConnectHook:
        """Set the connect hook (a decorator); see :data:`ConnectHook`."""
        self.connect_hook = hook
        return hook

    # -- broadcasting --------------------------------------------------------

    async def broadcast(self, stream: str, data: Any) -> int:
        """Send ``data`` to every subscriber of ``stream``.

        ``data`` is JSON-encoded once. Returns how many local subscribers
        it was handed to; it never waits on any of them. With Redis, it
        waits while the bridge's publish buffer is full and Redis is
        connected (backpressure for bursts); the non-async variants drop
        the oldest buffered broadcast instead.
        """
        await trio.lowlevel.checkpoint()
        await self.broker.wait_for_room()
        return self.broadcast_nowait(stream, data)

    def broadcast_nowait(self, stream: str, data: Any) -> int:
        """:meth:`broadcast` for synchronous code in the trio thread."""
        return self._publish(stream, encode_payload(data))

    def broadcast_sync(self, stream: str, data: Any) -> int:
        """:meth:`broadcast` from anywhere: trio code, a worker thread, or
        any other thread (a background job) while the cable is running.

        Raises:
            CableError: from a foreign thread when the cable is not running.
        """
        if trio.lowlevel.in_trio_run():
            return self.broadcast_nowait(stream, data)
        payload = encode_payload(data)  # encode in the caller's thread
        if self._token is None:
            raise CableError("the cable is not running")
        try:
            return trio.from_thread.run_sync(
                self._publish, stream, payload, trio_token=self._token
            )
        except trio.RunFinishedError:
            raise CableError("the cable is not running") from None

    def whisper(self, stream: str, payload: str, sender: Subscriber) -> int:
        """A client's whisper: to the local subscribers of ``stream`` but
        ``sender``; not stored in history, not carried to other processes."""
        return self.hub.publish_except(stream, payload, sender)

    def _publish(self, stream: str, payload: str) -> int:
        self.broker.publish(stream, payload)
        return self.hub.publish(stream, payload)

    # -- streams (hooks for a cross-process cable) -------------------------

    def channel_rules(self, name: str) -> ChannelRules | None:
        """The protocol's view of the channel registered as ``name``."""
        cls = self.channels.get(name)
        return None if cls is None else rules_for(cls)

    def stream_added(self, stream: str, sub: Subscriber) -> None:
        self.hub.add(stream, sub)

    def stream_removed(self, stream: str, sub: Subscriber) -> None:
        self.hub.remove(stream, sub)

    async def streams_live(self, streams: Iterable[str]) -> None:
        """Wait until broadcasts to ``streams`` reach this process."""
        await self.broker.streams_live(streams)

    # -- history -------------------------------------------------------------

    def keep_history(
        self, stream: str, *, limit: int | None = None, ttl: float | None = None
    ) -> None:
        """Keep the history of ``stream`` (a name or an ``fnmatch``
        pattern) from now on: its last ``limit`` broadcasts, none older
        than ``ttl`` seconds (by default ``history_limit`` and
        ``history_ttl``). Clients of the extended protocol recover what
        they missed from it."""
        options = self.options
        policy = HistoryPolicy(
            options.history_limit if limit is None else limit,
            options.history_ttl if ttl is None else ttl,
        )
        history = self.hub.history
        config = history.config if history is not None else None
        streams = dict(config.streams) if config is not None else {}
        streams[stream] = policy
        default = HistoryPolicy(options.history_limit, options.history_ttl)
        new = HistoryConfig(streams, default)
        if history is None:
            self.hub.history = HistoryStore(new)
        else:
            history.reconfigure(new)

    async def read_history(
        self, streams: Iterable[str], request: HistoryRequest
    ) -> Replay | None:
        """What a client missed of ``streams`` (see :class:`HistoryStore`);
        None if it is gone."""
        await trio.lowlevel.checkpoint()
        history = self.hub.history
        if history is None:  # nothing kept: any position is unknown
            history = HistoryStore(HistoryConfig())
        return history.read(streams, request)

    # -- running -------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._token is not None

    @property
    def connections(self) -> frozenset[Connection]:
        """The open connections."""
        return frozenset(self._connections)

    def count(self, name: str) -> None:
        """Add one to the counter ``name`` (see :meth:`stats`)."""
        self.counters[name] += 1

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the cable's background work (the shared ping timer) forever.

        Reports started once the cable can serve connections.

        Cancellation: stops at once; connections are closed by whoever
        runs them (their own cancellation sends ``server_restart``).
        """
        if self._token is not None:
            raise CableError("this cable is already running")
        broker = open_broker(self.hub, self.options)
        self._token = trio.lowlevel.current_trio_token()
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    self._attach(broker)
                    await nursery.start(broker.run)
                    task_status.started()
                    await self._ping_forever()
        finally:
            self._token = None
            self._attach(IN_PROCESS)

    def _attach(self, broker: Broker) -> None:
        self.broker = broker
        self.hub.on_first = broker.stream_wanted
        self.hub.on_last = broker.stream_unwanted
        for stream in self.hub.streams():
            broker.stream_wanted(stream)

    @property
    def bridge(self) -> RedisBridge | None:
        """The Redis bridge, while a cross-process cable runs."""
        broker = self.broker
        return broker if isinstance(broker, RedisBridge) else None

    def stats(self) -> dict[str, Any]:
        """Connections, subscriptions, streams, counters (and the bridge's)."""
        hub = self.hub.statistics()
        stats: dict[str, Any] = {
            "running": self.is_running,
            "connections": len(self._connections),
            "subscriptions": sum(len(c.subscriptions) for c in self._connections),
            "streams": hub.streams,
            "broadcasts": hub.broadcasts,
            "deliveries": hub.deliveries,
            "counters": dict(self.counters),
        }
        broker = self.broker.statistics()
        if broker is not None:
            stats["redis"] = dataclasses.asdict(broker)
        return stats

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Cable]:
        """Run the cable for the duration of an ``async with`` block.

        On exit every open connection is sent ``disconnect`` with reason
        ``server_restart`` (reconnect true) and closed.
        """
        with single_error():
            async with trio.open_nursery() as nursery:
                await nursery.start(self.serve)
                try:
                    yield self
                finally:
                    await self.shutdown()
                    nursery.cancel_scope.cancel()

    async def shutdown(
        self, reason: str = "server_restart", *, reconnect: bool = True
    ) -> None:
        """Close every connection (``disconnect`` frame first) and wait for
        them to end, for at most ``close_timeout`` plus ``hook_timeout``."""
        await self._connections.drain(
            self.options.drain_timeout, reason, reconnect=reconnect
        )

    def register(self, conn: Connection) -> None:
        """Count ``conn`` as open (it calls this as it starts)."""
        self._connections.add(conn)

    def unregister(self, conn: Connection) -> None:
        """``conn`` has ended."""
        self._connections.discard(conn)

    async def _ping_forever(self) -> NoReturn:
        # One timer for every connection: no task per connection just to
        # ping, and pings still flow when actions are slow.
        pong_timeout = self.options.pong_timeout
        while True:
            await trio.sleep(self.options.ping_interval)
            frame = encode_ping(int(time.time()))
            silent_since = (
                -math.inf
                if pong_timeout is None
                else trio.current_time() - pong_timeout
            )
            for conn in list(self._connections):
                if not conn.ready:
                    continue
                protocol = conn.protocol
                if protocol.last_seen < silent_since and protocol.dialect.extended:
                    self.count("no_pong")
                    log.info("conn %s: no pong for %gs", conn.id, pong_timeout)
                    conn.close("no_pong", reconnect=True)
                else:
                    conn.enqueue(frame)


class RedisCable(Cable):
    """A :class:`Cable` whose broadcasts cross processes through Redis.

    The same as ``Cable(redis_url=url, redis_prefix=prefix, ...)``; any
    cable also turns cross-process when the ``TRIO_CABLE_REDIS_URL``
    environment variable is set as it starts, so application code does
    not change between the two.

    Raises:
        CableError: at start-up, if the ``redis`` package is missing.
    """

    def __init__(self, url: str, *, prefix: str = DEFAULT_REDIS_PREFIX, **options: Any):
        super().__init__(redis_url=url, redis_prefix=prefix, **options)
