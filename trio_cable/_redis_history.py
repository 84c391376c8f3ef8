"""Stream history kept in Redis, and whispers across processes.

:class:`RedisHistoryBridge` is the Redis bridge a cable runs with: the
:class:`~._redis.RedisBridge` (broadcasts between processes) plus what the
extended protocol needs across them.

* **History in Redis.** A broadcast to a stream that keeps history (the
  cable's ``history`` option or ``keep_history()``) is not delivered here
  at once: one Lua script in Redis gives it the stream's next offset,
  appends it to the stream's Redis Stream (capped at the policy's
  ``limit``, the key expiring ``ttl`` seconds after the last broadcast)
  and PUBLISHes it with its position. Every process, this one included,
  delivers it as it comes back from Redis, so every process hands out
  the same offset in the same epoch, in one order per stream. The epoch
  of a stream lives in Redis beside its offset counter; a new one is made
  only when that is lost (FLUSHALL, a Redis restart without persistence,
  an eviction), and then positions of the old one get ``reject_history``.
* **Recovery** reads the Redis Stream (``XRANGE``, in a MULTI with the
  epoch and the last offset), so history survives the restart of any
  worker and a client may come back to any of them. The hand-off to live
  delivery is the protocol's (subscribe first, read, drop by offset).
* **Gaps.** Each process remembers the last position it delivered per
  stream; a broadcast past the next one (its Redis subscription was
  interrupted meanwhile) makes it read what it missed from the Redis
  Stream and deliver that first (what later ones wait for meanwhile).
* **Whispers** travel as the stream's messages marked transient: each
  process hands them to its subscribers (never stored, no position); the
  sender's process recognises its own echo as the bridge does.
* **Redis away.** Broadcasts to history streams wait in a bounded buffer
  of their own (``max_buffer``, the oldest dropped and counted, as the
  bridge does); they are delivered nowhere, this process included, until
  Redis has positioned them, so no client sees one without its position
  or out of order. Recovery reads fail while Redis is away: the client
  gets ``reject_history``.

Streams without history take the bridge's path unchanged (one cached
policy lookup per broadcast). redis-py blocks: every call runs in a
worker thread owned by the task that waits for it (``in_thread``).

Keys, under the bridge's prefix: ``history:<stream>`` (the Redis Stream;
entry id ``<offset>-<UNIX seconds>``, field ``data``) and
``history-meta:<stream>`` (a hash: ``epoch``, ``offset``), kept for
``meta_ttl`` (a day) after the stream's last broadcast, or ``ttl`` if
longer.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, NoReturn

import trio

from ._redis import DEFAULT_PREFIX, BridgeStatistics, RedisBridge
from ._redis_io import import_redis, in_thread, is_connection_failure, redis_client
from .protocol.ext import Position

if TYPE_CHECKING:
    from redis import Redis

    from ._history import HistoryPolicy, HistoryStore, Replay
    from ._hub import Hub
    from .protocol.ext import HistoryRequest, StreamPosition

__all__ = ["RedisHistoryBridge"]

log = logging.getLogger("trio_cable.redis")

#: Position a broadcast and publish it, atomically.
#: KEYS: the stream's entries, its meta hash.
#: ARGV: channel, payload, limit, ttl (ms), meta ttl (ms), an epoch for a
#: stream that has none, the broadcast's UNIX time (s).
_STORE: Final = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local id = offset .. '-' .. ARGV[7]
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], id, 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[1], '@h' .. epoch .. ' ' .. offset .. ' ' .. ARGV[2])
return offset
"""

#: Marks of the messages on a stream's channel that are not plain
#: broadcasts (which are JSON, and never start with "@").
_POSITIONED: Final = "@h"
_WHISPER: Final = "@w"


def _let_finish() -> None:
    """A read's stop(): let it finish (a few milliseconds; bounded by the
    reader's socket timeout) rather than close a pooled connection that
    other reads share."""


#: (stream, payload, policy, UNIX time, monotonic time)
_Pending = tuple[str, str, "HistoryPolicy", float, float]


class RedisHistoryBridge(RedisBridge):
    """The Redis bridge with stream history in Redis and whispers across
    processes (see the module doc); the same arguments as
    :class:`~._redis.RedisBridge`."""

    #: How long a stream's epoch and offset counter outlive its last
    #: broadcast (at least its ``ttl``): a client that saw the last one
    #: and comes back later gets an empty replay, not ``reject_history``.
    meta_ttl: float = 86_400.0

    def __init__(
        self, hub: Hub, url: str, *, prefix: str = DEFAULT_PREFIX, **options: Any
    ) -> None:
        super().__init__(hub, url, prefix=prefix, **options)
        self._pending: deque[_Pending] = deque()
        self._pending_ready = trio.Event()
        self._pending_room = trio.Event()
        #: The history writer's connection is up.
        self.writing = False
        self._reader: Redis | None = None
        self._stored = 0
        self._in_flight = 0  # taken from the buffer, being written
        self._history_dropped = 0
        self._history_failed = 0
        # The last position delivered here, per stream heard from, and the
        # streams whose gap is being read (what came meanwhile waits).
        self._last: dict[str, Position] = {}
        self._filling: dict[str, list[tuple[str, Position]]] = {}
        self._fills: trio.Nursery | None = None
        #: Positioned broadcasts this process never heard nor could read back.
        self.gaps = 0

    # -- called by the cable (trio thread, never blocks) -------------------

    def publish(self, stream: str, payload: str) -> bool:
        history = self.hub.history
        policy = None if history is None else history.policy_for(stream)
        if policy is None:
            return super().publish(stream, payload)
        self._pending.append((stream, payload, policy, time.time(), time.monotonic()))
        self._bound()
        self._pending_ready.set()
        return True

    def _bound(self) -> None:
        """Drop the oldest waiting broadcasts past ``max_buffer`` (counted)."""
        pending = self._pending
        while len(pending) > self.max_buffer:
            pending.popleft()
            if not self._history_dropped % self.max_buffer:
                log.warning(
                    "redis history buffer full (%d broadcasts): dropping the "
                    "oldest until Redis is back",
                    self.max_buffer,
                )
            self._history_dropped += 1

    def whisper(self, stream: str, payload: str) -> None:
        super().publish(stream, _WHISPER + payload)

    async def wait_for_room(self) -> None:
        await super().wait_for_room()
        while self.writing and len(self._pending) >= self.max_buffer:
            self._pending_room = trio.Event()
            await self._pending_room.wait()

    def statistics(self) -> BridgeStatistics:
        stats = super().statistics()
        pending = self._pending
        return dataclasses.replace(
            stats,
            published=stats.published + self._stored,
            dropped=stats.dropped + self._history_dropped,
            buffered=stats.buffered + len(pending) + self._in_flight,
            lag=max(stats.lag, time.monotonic() - pending[0][4] if pending else 0.0),
        )

    # -- recovery ------------------------------------------------------------

    async def read_history(
        self,
        history: HistoryStore | None,
        streams: Iterable[str],
        request: HistoryRequest,
    ) -> Replay | None:
        """What a client missed of ``streams``, read from Redis; None if it
        is gone, or Redis cannot be read now.

        Cancellation: the read (a few milliseconds) is let finish, bounded
        by the reader's socket timeout; nothing is returned.
        """
        await trio.lowlevel.checkpoint()
        plan: list[tuple[str, HistoryPolicy, StreamPosition | None]] = []
        for stream in streams:
            policy = None if history is None else history.policy_for(stream)
            spot = request.streams.get(stream)
            if policy is not None:
                plan.append((stream, policy, spot))
            elif spot is not None:
                return None  # a position in a stream that keeps no history
        if not plan or (request.since is None and all(s is None for *_, s in plan)):
            return []
        reader = self._reader
        if reader is None:
            return None
        try:
            return await in_thread(
                self._read, reader, plan, request.since, time.time(), stop=_let_finish
            )
        except Exception as exc:
            if not is_connection_failure(exc):
                raise
            log.warning("redis history unreadable, history refused: %s", exc)
            return None

    def _keys(self, stream: str) -> tuple[str, str]:
        return (
            f"{self.prefix}history:{stream}",
            f"{self.prefix}history-meta:{stream}",
        )

    def _read(
        self,
        reader: Redis,
        plan: list[tuple[str, HistoryPolicy, StreamPosition | None]],
        since: int | None,
        now: float,
    ) -> Replay | None:
        # Runs in a worker thread. One MULTI: each stream's epoch, last
        # offset and entries, as of one moment.
        pipe = reader.pipeline(transaction=True)
        for stream, _, spot in plan:
            entries, meta = self._keys(stream)
            pipe.hmget(meta, "epoch", "offset")
            pipe.xrange(entries, "-" if spot is None else f"{spot.offset + 1}-0", "+")
        results = pipe.execute()
        replay: Replay = []
        for n, (stream, policy, spot) in enumerate(plan):
            (raw_epoch, raw_latest), entries = results[2 * n], results[2 * n + 1]
            epoch = raw_epoch.decode() if raw_epoch is not None else None
            oldest = now - policy.ttl
            kept = []
            for entry_id, fields in entries:
                offset, _, stamp = entry_id.decode().partition("-")
                if int(stamp) >= oldest:
                    kept.append((int(offset), int(stamp), fields[b"data"].decode()))
            if spot is not None:
                latest = int(raw_latest or 0)
                if epoch != spot.epoch or not 0 <= spot.offset <= latest:
                    return None  # another epoch, or a position never handed out
                if spot.offset == latest:
                    continue
                if not kept or kept[0][0] != spot.offset + 1:
                    return None  # the first missed one is gone
                picked = kept
            elif since is not None and epoch is not None:
                picked = [entry for entry in kept if entry[1] >= since]
            else:
                continue
            replay.extend(
                (data, Position(stream, epoch or "", offset))
                for offset, _, data in picked
            )
        return replay

    # -- messages from Redis -------------------------------------------------

    def _deliver(self, stream: str, payload: str) -> None:
        if not payload.startswith("@"):
            # Positioned by no one (a plain PUBLISH): no history here either.
            if self._received_json(stream, payload):
                self.hub.publish_at(stream, payload, None)
            return
        mark, body = payload[:2], payload[2:]
        if mark == _WHISPER:
            self._received += 1
            self.hub.publish_except(stream, body, None)
            return
        try:
            if mark != _POSITIONED:
                raise ValueError(mark)
            epoch, offset, data = body.split(" ", 2)
            position = Position(stream, epoch, int(offset))
        except ValueError:
            log.warning("dropped a malformed message on %s", self.prefix + stream)
            return
        self._received += 1
        self._positioned(stream, data, position)

    def _positioned(self, stream: str, data: str, position: Position) -> None:
        """Deliver a positioned broadcast here, in offset order: after a
        gap (this process's Redis subscription was interrupted, so it did
        not hear some), what it missed is read from the stream first."""
        queued = self._filling.get(stream)
        if queued is not None:
            queued.append((data, position))
            return
        last = self._last.get(stream)
        if last is not None and last.epoch == position.epoch:
            if position.offset <= last.offset:
                return  # delivered here already (read by a fill)
            if position.offset > last.offset + 1 and self._fills is not None:
                self._filling[stream] = [(data, position)]
                self._fills.start_soon(self._fill, stream, last.offset, position)
                return
        self._last[stream] = position
        self.hub.publish_at(stream, data, position)

    async def _fill(self, stream: str, after: int, upto: Position) -> None:
        """Read the broadcasts of ``stream`` between ``after`` and ``upto``
        from Redis, then deliver them and what came meanwhile, in order."""
        missed: Replay = []
        try:
            reader = self._reader
            if reader is not None:
                missed = await in_thread(
                    self._read_gap, reader, stream, after, upto, stop=_let_finish
                )
        except Exception as exc:
            if not is_connection_failure(exc):
                raise
        finally:
            queued = self._filling.pop(stream, [])
            lost = upto.offset - after - 1 - len(missed)
            if lost:
                self.gaps += lost
                log.warning(
                    "%d broadcasts to %s missed here while Redis was away "
                    "and gone from its history",
                    lost,
                    stream,
                )
            for data, position in [*missed, *queued]:
                self._positioned(stream, data, position)

    def _read_gap(
        self, reader: Redis, stream: str, after: int, upto: Position
    ) -> Replay:
        # Runs in a worker thread: the entries between the two offsets, if
        # the stream is still in that epoch.
        entries_key, meta = self._keys(stream)
        pipe = reader.pipeline(transaction=True)
        pipe.hget(meta, "epoch")
        pipe.xrange(entries_key, f"{after + 1}-0", f"({upto.offset}-0")
        epoch, entries = pipe.execute()
        if epoch is None or epoch.decode() != upto.epoch:
            return []
        missed: Replay = []
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-")[0])
            position = Position(stream, upto.epoch, offset)
            missed.append((fields[b"data"].decode(), position))
        return missed

    def stream_unwanted(self, stream: str) -> None:
        super().stream_unwanted(stream)
        # Heard from again, it starts afresh: no gap to fill from before.
        self._last.pop(stream, None)

    # -- the tasks -------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """The bridge, and the history writer beside it; forever.

        Cancellation: as the bridge's; the writer's thread has ended and
        its connection and the reader's are closed.
        """
        reader = redis_client(self.url, socket_timeout=2)
        self._reader = reader
        try:
            async with trio.open_nursery() as nursery:
                self._fills = nursery
                await nursery.start(super().run)
                nursery.start_soon(self._write_forever)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._fills = self._reader = None
            self._filling.clear()
            reader.close()

    async def _write_forever(self) -> NoReturn:
        """Position pending broadcasts in Redis; reconnect with backoff."""
        failures = 0
        while True:
            client = redis_client(self.url, socket_timeout=5)
            was_writing = False
            try:
                await self._write_session(client)
            except Exception as exc:
                if not is_connection_failure(exc):
                    raise
                was_writing = self.writing
                if was_writing:
                    log.warning("redis history writer lost: %s", exc)
            finally:
                self.writing = False
                self._pending_room.set()  # nobody waits for a Redis that is away
                client.close()
            failures = 0 if was_writing else failures + 1
            delay = min(self.max_backoff, 0.1 * 2**failures)
            await trio.sleep(delay * random.uniform(0.5, 1.0))

    async def _write_session(self, client: Redis) -> NoReturn:
        stop = client.connection_pool.disconnect
        sha = await in_thread(client.script_load, _STORE, stop=stop)
        # After an outage: not before this process listens again, or what
        # waited would be published past its own subscribers.
        await self._wait_settled()
        self.writing = True
        pending = self._pending
        while True:
            if not pending:
                self._pending_ready = trio.Event()
                await self._pending_ready.wait()
            batch = [
                pending.popleft() for _ in range(min(self.batch_size, len(pending)))
            ]
            self._pending_room.set()
            self._in_flight = len(batch)
            try:
                failed = await in_thread(self._store, client, sha, batch, stop=stop)
            except BaseException:
                # Unknown how much was stored: all of it again after the
                # reconnect (at least once, for this one batch).
                pending.extendleft(reversed(batch))
                self._bound()
                raise
            finally:
                self._in_flight = 0
            self._stored += len(batch) - len(failed)
            if failed:
                self._history_failed += len(failed)
                log.error(
                    "redis refused to keep %d broadcasts (first: %s): %s",
                    len(failed),
                    failed[0][0],
                    failed[0][1],
                )

    def _store(
        self, client: Redis, sha: str, batch: list[_Pending]
    ) -> list[tuple[str, Exception]]:
        # Runs in a worker thread: one pipeline for the batch; the streams
        # whose script Redis refused (a key of another type...).
        redis = import_redis()
        epoch = secrets.token_hex(4)
        pipe = client.pipeline(transaction=False)
        for stream, payload, policy, wall, _ in batch:
            entries, meta = self._keys(stream)
            ttl = int(policy.ttl * 1000)
            pipe.evalsha(
                sha, 2, entries, meta,
                self.prefix + stream, payload, policy.limit, ttl,
                max(ttl, int(self.meta_ttl * 1000)), epoch, int(wall),
            )  # fmt: skip
        results = pipe.execute(raise_on_error=False)
        failed = []
        for (stream, *_), result in zip(batch, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                raise result  # Redis lost its scripts: reconnect, load again
            if isinstance(result, Exception):
                failed.append((stream, result))
        return failed
