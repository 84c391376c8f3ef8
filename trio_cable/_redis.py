"""The Redis bridge: one task carrying broadcasts between processes.

redis-py blocks, so its calls run in worker threads; each thread is owned
by a bridge task that waits for it, and cancellation first closes the
thread's socket so the thread returns at once. Nothing outlives the bridge:
no thread, no Redis connection.

* Local broadcasts are delivered locally at once (local delivery works
  while Redis is away) and queued for Redis; the publisher sends the queue
  in pipelined batches.
* Messages from Redis are delivered to local subscribers, except the echo
  of this process's own publishes: Redis sends those back in order, so a
  per-channel FIFO of what we published while subscribed recognises them.
  Each local subscriber thus gets every broadcast exactly once.
* A stream's Redis channel is subscribed while this process has a local
  subscriber to it, and unsubscribed when the last one leaves.
* When Redis goes away the bridge probes it with a backoff capped at
  ``max_backoff`` (1 s) and resubscribes what is still wanted; broadcasts
  made meanwhile wait in one bounded buffer per process (the oldest are
  dropped past the bound, counted, and logged when the drops begin and,
  with their number, when Redis is back).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from ._redis_io import Lost as _Lost
from ._redis_io import import_redis as _import_redis
from ._redis_io import in_thread as _in_thread
from ._redis_io import is_connection_failure as _is_connection_failure
from ._redis_io import redis_client as _client
from ._util import leaves, raise_cancellation
from .protocol.codec import encode_payload

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

    from ._hub import Hub

__all__ = ["BridgeStatistics", "RedisBridge", "redis_broadcast"]

log = logging.getLogger("trio_cable.redis")

DEFAULT_PREFIX = "trio_cable:"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def redis_broadcast(
    url: str, stream: str, data: Any, *, prefix: str = DEFAULT_PREFIX
) -> int:
    """Broadcast ``data`` to ``stream`` through Redis, from any program.

    For scripts and jobs with no cable of their own: every process whose
    Redis cable has subscribers to ``stream`` delivers it. Blocking; returns
    how many bridge connections received it (one per subscribed process).
    """
    client = _client(url, socket_timeout=5)
    try:
        return int(client.publish(prefix + stream, encode_payload(data)))
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class BridgeStatistics:
    """Health and counters of a Redis bridge."""

    connected: bool
    reconnects: int
    published: int
    received: int
    dropped: int
    buffered: int
    channels: int
    #: Seconds the oldest buffered broadcast has waited (0: none waits).
    lag: float = 0.0


class RedisBridge:
    """Carries a cable's broadcasts through Redis (see the module doc)."""

    def __init__(
        self,
        hub: Hub,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_buffer: int = 10_000,
        max_backoff: float = 1.0,
        subscribe_timeout: float = 5.0,
        rejoin_timeout: float = 5.0,
        heartbeat: float = 1.0,
        batch_size: int = 1000,
    ) -> None:
        _import_redis()  # fail at start-up, not at the first broadcast
        self.hub = hub
        self.url = url
        self.prefix = prefix
        self.max_buffer = max_buffer
        self.max_backoff = max_backoff
        self.subscribe_timeout = subscribe_timeout
        self.rejoin_timeout = rejoin_timeout
        self.heartbeat = heartbeat
        self.batch_size = batch_size
        # receivers of each channel's last publish: after an outage, wait
        # for as many to be back before publishing what was buffered
        self._receivers: dict[str, int] = {}
        self._after_outage = False
        self.connected = False
        self._reconnects = 0
        self._published = 0
        self._received = 0
        self._dropped = 0
        self._dropped_before_outage = 0  # the count when this outage began
        # (channel, payload, when it was buffered: for the lag)
        self._outgoing: deque[tuple[str, str, float]] = deque()
        self._wanted: set[str] = set()  # channels with local subscribers
        self._requested: set[str] = set()  # SUBSCRIBE sent on this connection
        self._acked: set[str] = set()  # SUBSCRIBE acknowledged
        self._acks: dict[str, trio.Event] = {}
        self._echo: dict[str, deque[str]] = {}
        self._outgoing_ready = trio.Event()
        self._subscriptions_changed = trio.Event()
        self._settled = trio.Event()  # every SUBSCRIBE sent is acknowledged
        self._room = trio.Event()  # the publish buffer has room again
        self._token: trio.lowlevel.TrioToken | None = None

    # -- called by the cable (trio thread, never blocks) -------------------

    def publish(self, stream: str, payload: str) -> bool:
        """Queue a local broadcast for Redis; False: the hub delivers it here."""
        if len(self._outgoing) >= self.max_buffer:
            self._outgoing.popleft()
            if self._dropped == self._dropped_before_outage:
                log.warning(
                    "redis buffer full (%d broadcasts): dropping the oldest "
                    "until Redis is back",
                    self.max_buffer,
                )
            self._dropped += 1
        self._outgoing.append((self.prefix + stream, payload, time.monotonic()))
        self._outgoing_ready.set()
        return False

    async def wait_for_room(self) -> None:
        """While connected, wait until the publish buffer has room.

        This is the backpressure of ``await cable.broadcast()``: a burst
        faster than Redis takes it waits instead of dropping. While Redis
        is unreachable it returns at once (the buffer drops the oldest).
        """
        while self.connected and len(self._outgoing) >= self.max_buffer:
            self._room = trio.Event()
            await self._room.wait()

    def stream_wanted(self, stream: str) -> None:
        self._wanted.add(self.prefix + stream)
        self._subscriptions_changed.set()
        if self._settled.is_set() and not self._is_settled():
            self._settled = trio.Event()

    def _is_settled(self) -> bool:
        return self._wanted <= self._acked and self._requested <= self._acked

    def stream_unwanted(self, stream: str) -> None:
        self._wanted.discard(self.prefix + stream)
        self._subscriptions_changed.set()

    async def streams_live(self, streams: Iterable[str]) -> None:
        """Wait until Redis acknowledged SUBSCRIBE for ``streams``.

        Returns at once while Redis is unreachable (local delivery still
        works), and after ``subscribe_timeout`` at the latest.
        """
        waits = []
        for stream in streams:
            channel = self.prefix + stream
            if self.connected and channel not in self._acked:
                waits.append(self._acks.setdefault(channel, trio.Event()))
        if not waits:
            return
        with trio.move_on_after(self.subscribe_timeout) as scope:
            for event in waits:
                await event.wait()
        if scope.cancelled_caught:
            log.warning("redis did not acknowledge SUBSCRIBE in time")

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            connected=self.connected,
            reconnects=self._reconnects,
            published=self._published,
            received=self._received,
            dropped=self._dropped,
            buffered=len(self._outgoing),
            channels=len(self._acked),
            lag=time.monotonic() - self._outgoing[0][2] if self._outgoing else 0.0,
        )

    # -- the bridge task ----------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Connect, bridge, reconnect on failure; forever.

        Reports started after the first connection attempt, successful or
        not (local delivery works without Redis).

        Cancellation: returns promptly, even during a backoff or a
        connection attempt; every thread it started has ended and every
        Redis connection it opened is closed.
        """
        self._token = trio.lowlevel.current_trio_token()
        failures = 0
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            client = _client(self.url, socket_timeout=5, health_check_interval=10)
            was_connected = self.connected
            try:
                await self._session(client, ready)
            except BaseException as exc:
                # A shutdown meeting a failing call (a heartbeat timing out
                # against a hung server): the cancellation goes on alone.
                raise_cancellation(exc, moot=_is_connection_failure)
                if not isinstance(exc, Exception) or not _is_connection_failure(exc):
                    raise
                self._lost(exc)
            finally:
                client.close()
            ready()
            # Back off from the last success, not from the first failure.
            failures = 0 if self._session_ok or was_connected else failures + 1
            delay = min(self.max_backoff, 0.1 * 2**failures)
            await trio.sleep(delay * random.uniform(0.5, 1.0))

    def _lost(self, exc: BaseException) -> None:
        self._after_outage = True
        self._room.set()  # nobody waits for a Redis that is away
        if self.connected:
            self._wanted_at_outage = frozenset(self._wanted)
            log.warning("redis connection lost: %s", leaves(exc)[0])
        else:
            log.info("redis unreachable: %s", leaves(exc)[0])
        self.connected = False
        for kept in (self._requested, self._acked, self._echo):
            kept.clear()
        # Subscriptions waiting for an acknowledgement go ahead unacknowledged.
        for event in self._acks.values():
            event.set()
        self._acks.clear()

    _session_ok = False
    _wanted_at_outage: frozenset[str] = frozenset()

    async def _session(self, client: Redis, ready: Callable[[], None]) -> None:
        self._session_ok = False
        # The subscriber has a client (and connection pool) of its own:
        # stopping a publish or a ping must never close the socket the
        # listener thread is reading, or redis-py reconnects it under us.
        sub_client = _client(self.url, socket_timeout=1, health_check_interval=10)
        pubsub = sub_client.pubsub()  # type: ignore[no-untyped-call]  # unannotated
        try:
            await _in_thread(client.ping, stop=client.connection_pool.disconnect)
            if self._was_connected:
                self._reconnects += 1
                log.info("redis reconnected (%d)", self._reconnects)
                lost = self._dropped - self._dropped_before_outage
                if lost:
                    log.warning(
                        "redis was away: %d broadcasts dropped (buffer of %d)",
                        lost,
                        self.max_buffer,
                    )
                self._dropped_before_outage = self._dropped
            else:
                log.info("redis connected")
            self._was_connected = True
            self.connected = True
            self._session_ok = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen, pubsub)
                nursery.start_soon(self._keep_subscriptions, pubsub)
                nursery.start_soon(self._publish_forever, client)
                nursery.start_soon(self._heartbeat, client)
                ready()
        finally:
            pubsub.close()
            sub_client.close()

    _was_connected = False

    async def _listen(self, pubsub: PubSub) -> None:
        def stop() -> None:
            # The thread polls this flag every 0.2 s; closing its socket
            # under it instead races redis-py's own reconnect logic.
            self._stopping = True

        self._stopping = False
        await _in_thread(self._listen_thread, pubsub, stop=stop)
        await trio.lowlevel.checkpoint()  # ended because we were cancelled?
        raise _Lost("the subscriber connection ended")

    _stopping = False

    def _listen_thread(self, pubsub: PubSub) -> None:
        # Runs in a worker thread: read messages, hand them over in batches.
        token = self._token
        try:
            while not self._stopping:
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                batch = [message]
                while len(batch) < self.batch_size:
                    more = pubsub.get_message(timeout=0)
                    if more is None:
                        break
                    batch.append(more)
                trio.from_thread.run_sync(self._on_messages, batch, trio_token=token)
        except Exception:
            if not self._stopping:  # else: only the socket stop() closed
                raise

    def _on_messages(self, batch: list[dict[str, Any]]) -> None:
        prefix_length = len(self.prefix)
        for message in batch:
            kind = message["type"]
            channel = message["channel"].decode("utf-8", "replace")
            if kind == "message":
                payload = message["data"].decode("utf-8", "replace")
                echo = self._echo.get(channel)
                if echo and echo[0] == payload:
                    echo.popleft()  # our own broadcast, delivered already
                    continue
                self._deliver(channel[prefix_length:], payload)
            elif kind == "subscribe":
                self._acked.add(channel)
                event = self._acks.pop(channel, None)
                if event is not None:
                    event.set()
                if self._is_settled():
                    self._settled.set()
            elif kind == "unsubscribe":
                self._acked.discard(channel)

    def _deliver(self, stream: str, payload: str) -> None:
        """A message from another process, for this one's subscribers."""
        if self._received_json(stream, payload):
            self.hub.publish(stream, payload)

    def _received_json(self, stream: str, payload: str) -> bool:
        """Count a message from Redis, if it is JSON (else log and drop it:
        False)."""
        try:
            json.loads(payload)
        except ValueError:
            log.warning("dropped a non-JSON message on %s", self.prefix + stream)
            return False
        self._received += 1
        return True

    async def _keep_subscriptions(self, pubsub: PubSub) -> None:
        # SUBSCRIBE is one short write: let it finish (bounded by the
        # socket timeout) rather than close the socket the listener reads.
        def stop() -> None:
            pass

        while True:
            self._subscriptions_changed = trio.Event()
            add = self._wanted - self._requested
            remove = self._requested - self._wanted
            if add:
                self._requested |= add
                await _in_thread(pubsub.subscribe, *add, stop=stop)
            if remove:
                self._requested -= remove
                self._acked -= remove
                for channel in remove:
                    self._echo.pop(channel, None)
                await _in_thread(pubsub.unsubscribe, *remove, stop=stop)
            if not (self._wanted ^ self._requested):
                await self._subscriptions_changed.wait()

    async def _publish_forever(self, client: Redis) -> None:
        def stop() -> None:
            client.connection_pool.disconnect()

        if self._after_outage and self._outgoing:
            await self._wait_rejoined(client, stop)
        self._after_outage = False
        while True:
            if not self._outgoing:
                self._outgoing_ready = trio.Event()
                await self._outgoing_ready.wait()
            await self._wait_settled()
            if not self._outgoing:
                continue
            batch = [
                self._outgoing.popleft()
                for _ in range(min(self.batch_size, len(self._outgoing)))
            ]
            self._room.set()
            for channel, payload, _ in batch:
                if channel in self._acked:
                    self._echo.setdefault(channel, deque()).append(payload)
            try:
                counts = await _in_thread(self._publish_batch, client, batch, stop=stop)
            except BaseException:
                # Unknown how much went out: send it all again after the
                # reconnect (at-least-once for this one batch).
                self._outgoing.extendleft(reversed(batch))
                raise
            self._published += len(batch)
            for (channel, _, _), count in zip(batch, counts, strict=True):
                self._receivers[channel] = count

    async def _heartbeat(self, client: Redis) -> None:
        # Notice a dead or unreachable Redis even when nothing is sent
        # or received, so ``connected`` tells the truth.
        while True:
            await trio.sleep(self.heartbeat)
            await _in_thread(client.ping, stop=client.connection_pool.disconnect)

    async def _wait_settled(self) -> None:
        # A publish racing a SUBSCRIBE in flight may or may not come back
        # to us: wait until Redis acknowledged every SUBSCRIBE, so the
        # echo of each publish is known for sure (one round trip at most).
        if self._is_settled():
            return
        if self._settled.is_set():
            self._settled = trio.Event()
        with trio.move_on_after(self.subscribe_timeout):
            await self._settled.wait()

    async def _wait_rejoined(self, client: Redis, stop: Callable[[], None]) -> None:
        # Redis keeps nothing for a subscriber that is away: publishing the
        # outage's broadcasts before the other processes have resubscribed
        # would lose them. Wait (boundedly) until each channel has as many
        # subscribers as it had before the outage, this process counted as
        # it is now (its own last subscriber there may have left meanwhile).
        before, now = self._wanted_at_outage, self._wanted
        expected = {
            channel: self._receivers[channel] - (channel in before) + (channel in now)
            for channel, _, _ in self._outgoing
            if channel in self._receivers
        }
        if not expected:
            return
        channels = list(expected)
        log.debug("waiting for %s to rejoin", expected)
        with trio.move_on_after(self.rejoin_timeout) as scope:
            while True:
                numsub = await _in_thread(client.pubsub_numsub, *channels, stop=stop)
                log.debug("numsub %s", numsub)
                if all(int(count) >= expected[_text(name)] for name, count in numsub):
                    return
                await trio.sleep(0.05)
        if scope.cancelled_caught:
            log.warning("publishing buffered broadcasts before every process is back")

    @staticmethod
    def _publish_batch(client: Redis, batch: list[tuple[str, str, float]]) -> list[int]:
        pipe = client.pipeline(transaction=False)
        for channel, payload, _ in batch:
            pipe.publish(channel, payload)
        return [int(count) for count in pipe.execute()]


#: One way to reach Redis, for the package's other users (sessions).
redis_client, in_thread = _client, _in_thread
