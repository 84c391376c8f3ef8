"""The Cable: channel registry, hub, connections and the broadcast API."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, overload

import trio

from ._admission import Admission
from ._background import BackgroundTasks
from ._broker import IN_PROCESS, Broker, open_broker
from ._channel import Channel, rules_for
from ._errors import CableError
from ._history import HistoryPolicy, HistoryStore, keep_stream_history
from ._hub import Hub, Subscriber
from ._options import CableOptions
from ._pinger import ping_forever
from ._presence import PresenceHook, PresenceTracker
from ._pubsub import PubSubRules
from ._redis import RedisBridge
from ._redis_presence import run_presence
from ._redis_sessions import session_keeper
from ._registry import ConnectionSet
from ._remote import REMOTE_DISCONNECT, close_matching, encode_command
from ._util import single_error
from .protocol.codec import encode_payload

if TYPE_CHECKING:
    from ._connection import Connection
    from ._history import Replay
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
        **options: any field of :class:`CableOptions` (each documented
            there): ping and close timing, the slow-client and input
            limits, Redis, origins, the connection cap, the extended
            protocol, stream history and ``$pubsub`` streams.
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
        # Which $pubsub streams clients may open (streams_secret...).
        self._pubsub = PubSubRules.install(options, self.channel)
        self.counters: Counter[str] = Counter()
        self._connections: ConnectionSet[Connection] = ConnectionSet()
        #: Handshakes under way (counted by the serving path).
        self.handshakes = 0
        self._token: trio.lowlevel.TrioToken | None = None
        #: Sessions of dropped extended-protocol clients, to resume.
        self.sessions = session_keeper(self)
        self.presence_tracker = PresenceTracker(
            options, self._publish, self.start_soon, self.hub.subscribers
        )
        self._tasks = BackgroundTasks([self.sessions.run, self._run_presence])
        self._admission = Admission(options, self.count, log)

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
        are open or under way (this handshake counts).
        """
        connections = len(self._connections) + max(self.handshakes, 1)
        return self._admission.refuse_handshake(request, connections)

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
            registered_on = cls.__dict__.get("_cables", ())
            if self not in registered_on:
                cls._cables = (*registered_on, self)
            return cls

        return register if cls is None else register(cls)

    def signed_stream_name(self, stream: str) -> str:
        """``stream`` signed with ``streams_secret``, for a client's
        ``$pubsub`` subscription (``cable.streamFromSigned(signed)``), in
        AnyCable's format (Turbo's too: the same secret, the same name).

        Raises:
            CableError: the cable has no ``streams_secret``.
            TypeError: ``stream`` is not a string.
        """
        return self._pubsub.sign(stream)

    def connect(self, hook: ConnectHook) -> ConnectHook:
        """Set the connect hook (a decorator); see :data:`ConnectHook`."""
        self.connect_hook = hook
        return hook

    # -- background tasks ----------------------------------------------------

    def background(
        self, fn: Callable[[], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]:
        """Run ``async def fn()`` beside the cable for as long as it runs
        (a decorator; register before the cable starts).

        It starts in the cable's own nursery each time the cable starts,
        on every transport (``serve_cable``, ``CableApp`` through the ASGI
        lifespan, ``trio-cable serve``, ``cable_test_client``).

        Cancellation: at shutdown, background tasks are cancelled *first*,
        before any client is disconnected, so nothing is broadcast to a
        closing connection and shutdown never waits on them. An exception
        from one is logged (``trio_cable.cable``, ERROR) and ends that
        task only: the cable and its clients carry on.
        """
        self._tasks.add(fn)
        return fn

    def start_soon(
        self, fn: Callable[..., Awaitable[object]], *args: Any, name: str | None = None
    ) -> None:
        """Start ``fn(*args)`` in the cable's nursery, for the rest of this
        run (from any task in the trio thread, e.g. an action).

        The same lifetime and error handling as :meth:`background`.

        Raises:
            CableError: the cable is not running (or is shutting down).
        """
        self._tasks.start_soon(fn, args, name)

    async def stop_background(self) -> None:
        """Cancel the background tasks and wait for them to end (shielded,
        for at most ``close_timeout``); a no-op when none run."""
        await self._tasks.stop(self.close_timeout)

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

    # -- presence ------------------------------------------------------------

    async def presence(self, stream: str) -> dict[str, Any]:
        """Who is here on ``stream``: each member's id -> its latest info,
        in every process of a Redis cable (while Redis is away: this one).

        Cancellation: it waits for one Redis round trip at most.
        """
        records = await self.presence_tracker.members(stream)
        return {id: json.loads(info) for id, info in records.items()}

    def on_presence(self, hook: PresenceHook) -> PresenceHook:
        """Call ``hook(event)`` (a :class:`PresenceEvent`) for each join and
        leave on any presence stream, once per event in all processes (in
        the one that announces it). A decorator; an ``async def`` hook runs
        in the cable's nursery, a plain one in the trio thread."""
        self.presence_tracker.hooks.append(hook)
        return hook

    async def _run_presence(self) -> None:
        bridge = self.bridge
        await run_presence(self.presence_tracker, bridge.url if bridge else None)

    # -- remote disconnect -----------------------------------------------------

    async def disconnect(
        self, identity: Any, *, reason: str = "remote", reconnect: bool = True
    ) -> int:
        """Close every connection of ``identity``, in every process.

        Like Rails' ``remote_connections.where(current_user: u).disconnect``:
        each matching connection is sent ``{"type": "disconnect", "reason":
        reason, "reconnect": reconnect}`` and closed (its subscriptions'
        ``unsubscribed()`` run). With Redis the command reaches every
        process of the cable; without, this process only.

        Arguments:
            identity: a JSON value. A connection matches when its identity
                (what the connect hook returned) equals it, or, for a dict,
                when each key names an item or attribute of the identity
                equal to the value (``{"id": 7}`` matches ``User(id=7)``).
            reason: the disconnect frame's reason.
            reconnect: whether the client may reconnect (the official
                client does not reconnect when false).

        Returns how many connections it closed in this process. From a
        process with no running cable, use :func:`redis_disconnect`.

        Raises:
            TypeError: ``identity`` is not JSON-encodable.

        Cancellation: it waits only while the Redis bridge's publish buffer
        is full (as :meth:`broadcast` does); cancelled there, nothing was
        sent. Like broadcasts, a command still buffered when the cable
        stops is dropped.
        """
        payload = encode_command(identity, reason, reconnect)
        await trio.lowlevel.checkpoint()
        await self.broker.wait_for_room()
        self.broker.publish(REMOTE_DISCONNECT, payload)
        return self._disconnect_here(payload)

    def _disconnect_here(self, payload: str) -> int:
        self.sessions.revoke(payload)  # kept sessions of it are not restored
        return close_matching(self._connections, payload)

    def whisper(self, stream: str, payload: str, sender: Subscriber) -> int:
        """A whisper, to every subscriber of ``stream`` but ``sender``."""
        self.broker.whisper(stream, payload)
        return self.hub.publish_except(stream, payload, sender)

    def _publish(self, stream: str, payload: str) -> int:
        if self.broker.publish(stream, payload):  # it comes back positioned
            return self.hub.subscribers(stream)
        return self.hub.publish(stream, payload)

    # -- streams (hooks for a cross-process cable) -------------------------

    def channel_rules(self, name: str) -> ChannelRules | None:
        """The protocol's view of the channel registered as ``name``."""
        cls = self.channels.get(name)
        return None if cls is None else rules_for(cls)

    def channel_names(self) -> Collection[str]:
        """The names clients subscribe to channels with."""
        return self.channels.keys()

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
        default = HistoryPolicy(options.history_limit, options.history_ttl)
        self.hub.history = keep_stream_history(
            self.hub.history, stream, default, limit=limit, ttl=ttl
        )

    async def read_history(
        self, streams: Iterable[str], request: HistoryRequest
    ) -> Replay | None:
        """What a client missed of ``streams``; None if it is gone."""
        return await self.broker.read_history(self.hub.history, streams, request)

    # -- running -------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._token is not None

    @property
    def connections(self) -> frozenset[Connection]:
        """The open connections."""
        return frozenset(self._connections)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (see :meth:`stats`)."""
        self.counters[name] += n

    def refuse_socket(self) -> bool:
        """Whether a socket just accepted must be closed before its
        handshake: ``max_handshakes`` are under way (counted and logged)."""
        return self._admission.refuse_socket(self.handshakes)

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the cable's background work forever: the shared ping timer,
        the broker, and the tasks of :meth:`background`.

        Reports started once the cable can serve connections.

        Cancellation: stops at once; connections are closed by whoever
        runs them (their own cancellation sends ``server_restart``).
        """
        if self._token is not None:
            raise CableError("this cable is already running")
        broker = open_broker(self.hub, self.options)
        self._token = trio.lowlevel.current_trio_token()
        self.hub.control[REMOTE_DISCONNECT] = self._disconnect_here
        try:
            with single_error():
                async with trio.open_nursery() as nursery:
                    self._attach(broker)
                    await nursery.start(broker.run)
                    # Remote disconnects from elsewhere reach us from now on.
                    await broker.streams_live(self.hub.control)
                    await nursery.start(self._tasks.run)
                    task_status.started()
                    await ping_forever(self, self._admission.refusals)
        finally:
            self._token = None
            self._attach(IN_PROCESS)
            del self.hub.control[REMOTE_DISCONNECT]

    def _attach(self, broker: Broker) -> None:
        self.broker = broker
        self.hub.on_first = broker.stream_wanted
        self.hub.on_last = broker.stream_unwanted
        for stream in (*self.hub.streams(), *self.hub.control):
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
                    self._admission.refusals.flush()

    async def shutdown(
        self, reason: str = "server_restart", *, reconnect: bool = True
    ) -> None:
        """Cancel the background tasks, then close every connection
        (``disconnect`` frame first) and wait for them to end, for at most
        ``close_timeout`` plus ``hook_timeout``."""
        await self.stop_background()
        await self._connections.drain(
            self.options.drain_timeout, reason, reconnect=reconnect
        )

    def register(self, conn: Connection) -> None:
        """Count ``conn`` as open (it calls this as it starts)."""
        self._connections.add(conn)

    def unregister(self, conn: Connection) -> None:
        """``conn`` has ended."""
        self._connections.discard(conn)
