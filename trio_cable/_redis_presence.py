"""Presence across processes: the shared view of members, kept in Redis.

Each process (a *worker*, named by a random id) writes its own members
to Redis with Lua scripts, so every decision is atomic and made once:

* ``<prefix>presence:s:<stream>``: hash id -> info (the latest given);
* ``<prefix>presence:c:<stream>``: hash id -> how many workers hold it;
* ``<prefix>presence:w:<worker>``: hash ``[stream, id]`` -> 1, what the
  worker holds;
* ``<prefix>presence:alive``: sorted set worker -> the deadline of its
  claim (Redis' own clock).

A join that takes an id's count from 0 to 1 is announced by the worker
that made it; a leave that takes it back to 0 likewise. Every
``presence_heartbeat`` seconds each worker renews its claim and reaps the
workers whose claim ran out (a ``kill -9``, a lost host): the script that
reaps one removes it from the set, so exactly one worker announces its
members' leaves. A worker reaps only after it has been connected for a
whole ``presence_expiry``, so after a Redis outage every worker has had
the time to renew its claim first: an outage announces no leave.

While Redis is away nothing is written and nothing announced; the local
view (:meth:`~trio_cable.Cable.presence` answers from it) carries on.
When Redis is back each worker writes its members again (an idempotent
join: nothing announced twice, nothing lost if Redis lost its data) and
what changed meanwhile is announced then. Redis calls block, so they run
in worker threads owned by the task that waits for them (as in
:mod:`._redis`); cancellation closes their sockets and waits for them.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from typing import TYPE_CHECKING, Any, Final, NoReturn

import trio

from ._presence import Change, PresenceTracker
from ._redis_io import in_thread as _in_thread
from ._redis_io import is_connection_failure as _is_connection_failure
from ._redis_io import redis_client as _client
from ._util import leaves

if TYPE_CHECKING:
    from redis import Redis

    from ._options import CableOptions

__all__ = ["RedisPresence", "run_presence"]

log = logging.getLogger("trio_cable.presence")

#: Members written to Redis per round trip.
BATCH: Final = 500

_JOIN: Final = """
local p = ARGV[1]
redis.call('HSET', p..'s:'..ARGV[3], ARGV[4], ARGV[5])
if redis.call('HSETNX', p..'w:'..ARGV[2], ARGV[6], '1') == 1 then
  if redis.call('HINCRBY', p..'c:'..ARGV[3], ARGV[4], 1) == 1 then return 1 end
end
return 0
"""

_LEAVE: Final = """
local p = ARGV[1]
local ckey = p..'c:'..ARGV[3]
if redis.call('HDEL', p..'w:'..ARGV[2], ARGV[5]) == 1 then
  if redis.call('HINCRBY', ckey, ARGV[4], -1) <= 0 then
    redis.call('HDEL', ckey, ARGV[4])
    redis.call('HDEL', p..'s:'..ARGV[3], ARGV[4])
    return 1
  end
  return 0
end
if ARGV[6] == '1' and redis.call('HEXISTS', ckey, ARGV[4]) == 0 then
  redis.call('HDEL', p..'s:'..ARGV[3], ARGV[4])
  return 1
end
return 0
"""

# Returns {status, field...}: status 0 known, 1 unknown (Redis lost its
# data, or the first beat), 2 reaped meanwhile; each field a member of a
# dead worker that left with it.
_BEAT: Final = """
local p = ARGV[1]
local alive = p..'alive'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local status = 0
if not redis.call('ZSCORE', alive, ARGV[2]) then
  status = 1
  if redis.call('DEL', p..'reaped:'..ARGV[2]) == 1 then status = 2 end
end
redis.call('ZADD', alive, now + tonumber(ARGV[3]), ARGV[2])
local out = {status}
if ARGV[4] == '1' then
  for _, w in ipairs(redis.call('ZRANGEBYSCORE', alive, '-inf', now)) do
    redis.call('ZREM', alive, w)
    redis.call('SET', p..'reaped:'..w, '1', 'PX', 86400000)
    local wkey = p..'w:'..w
    for _, f in ipairs(redis.call('HKEYS', wkey)) do
      local k = cjson.decode(f)
      local ckey = p..'c:'..k[1]
      if redis.call('HINCRBY', ckey, k[2], -1) <= 0 then
        redis.call('HDEL', ckey, k[2])
        redis.call('HDEL', p..'s:'..k[1], k[2])
        table.insert(out, f)
      end
    end
    redis.call('DEL', wkey)
  end
end
return out
"""


def _field(stream: str, id: str) -> str:
    return json.dumps([stream, id], separators=(",", ":"))


class RedisPresence:
    """The presence backend of a cable across processes (module doc)."""

    def __init__(
        self, tracker: PresenceTracker, url: str, options: CableOptions
    ) -> None:
        self.tracker = tracker
        self.url = url
        self.prefix = options.redis_prefix + "presence:"
        self.heartbeat = options.presence_heartbeat
        self.expiry = options.presence_expiry
        #: This process's name among the workers.
        self.worker = secrets.token_hex(8)
        self.connected = False
        #: Heartbeats that reached Redis (and the reaps they did).
        self.beats = 0
        # (stream, id) whose local state changed since Redis last heard.
        self._dirty: dict[tuple[str, str], None] = dict.fromkeys(tracker.local_keys())
        # What Redis holds of ours: (stream, id) -> info.
        self._synced: dict[tuple[str, str], str] = {}
        # Members the cable was told joined (and not yet that they left).
        self._announced: set[tuple[str, str]] = set()
        self._wake = trio.Event()
        self._reader: Redis | None = None
        #: Set after the first attempt to reach Redis, successful or not.
        self.tried = trio.Event()

    def changed(self, stream: str, id: str, change: Change) -> None:
        self._dirty[(stream, id)] = None
        self._wake.set()

    async def members(self, stream: str) -> dict[str, str]:
        """Every worker's members, and ours not yet written; only ours
        while Redis is away."""
        with trio.move_on_after(self.expiry):  # the first attempt, bounded
            await self.tried.wait()
        local = self.tracker.local_members(stream)
        reader = self._reader
        if reader is None:
            await trio.lowlevel.checkpoint()
            return local
        key = self.prefix + "s:" + stream
        try:
            raw = await _in_thread(
                reader.hgetall, key, stop=reader.connection_pool.disconnect
            )
        except Exception as exc:
            if not _is_connection_failure(exc):
                raise
            return local
        remote = {_text(id): _text(info) for id, info in raw.items()}
        # Ours only where Redis has not heard of it yet (the latest info
        # of an id held elsewhere too may be another worker's).
        synced = self._synced
        return remote | {
            id: info for id, info in local.items() if synced.get((stream, id)) != info
        }

    # -- the task ------------------------------------------------------------

    async def run(self) -> NoReturn:
        """Keep Redis up to date with this process's members, renew its
        claim and reap dead workers; reconnect with backoff; forever.

        Cancellation: prompt; its threads have ended and its Redis
        connections are closed.
        """
        failures = 0
        while True:
            client = _client(self.url, socket_timeout=5)
            reader = _client(self.url, socket_timeout=5)
            try:
                await self._session(client, reader)
            except Exception as exc:
                if not _is_connection_failure(exc):
                    raise
                if self.connected:
                    why = leaves(exc)[0]
                    log.warning("presence: redis connection lost: %s", why)
                failures = 0 if self.connected else failures + 1
            finally:
                self.tried.set()
                self.connected = False
                self._reader = None
                client.close()
                reader.close()
            delay = min(1.0, 0.1 * 2**failures)
            await trio.sleep(delay * random.uniform(0.5, 1.0))

    async def _session(self, client: Redis, reader: Redis) -> None:
        stop = client.connection_pool.disconnect
        status, _ = await _in_thread(self._beat, client, False, stop=stop)
        self._resync(reaped=status == 2)
        self.connected = True
        self._reader = reader
        self.tried.set()
        since = trio.current_time()
        log.info("presence: worker %s connected to redis", self.worker)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._beat_forever, client, since)
            nursery.start_soon(self._sync_forever, client)

    def _resync(self, *, reaped: bool) -> None:
        """Write every member of ours again: Redis may have lost them (a
        restart), or another worker reaped us (we were silent too long:
        it announced their leaves, so they are announced again)."""
        keys = self.tracker.local_keys()
        if reaped:
            # Its reaper announced the leave of every member Redis had of
            # ours (those that left here since too: no second leave).
            log.warning("presence: worker %s was taken for dead", self.worker)
            self._announced.difference_update(keys)
            self._announced.difference_update(self._synced)
        self._synced.clear()
        self._dirty.update(dict.fromkeys(keys))
        self._wake.set()

    async def _beat_forever(self, client: Redis, since: float) -> NoReturn:
        stop = client.connection_pool.disconnect
        while True:
            await trio.sleep(self.heartbeat)
            reap = trio.current_time() - since >= self.expiry
            status, gone = await _in_thread(self._beat, client, reap, stop=stop)
            self.beats += 1
            if status:
                self._resync(reaped=status == 2)
            for stream, id in gone:
                self._announced.discard((stream, id))
                self.tracker.announce("leave", stream, id)

    def _beat(self, client: Redis, reap: bool) -> tuple[int, list[tuple[str, str]]]:
        out: list[Any] = client.eval(
            _BEAT,
            0,
            self.prefix,
            self.worker,
            int(self.expiry * 1000),
            "1" if reap else "0",
        )
        gone = [tuple(json.loads(_text(f))) for f in out[1:]]
        return int(out[0]), [(str(s), str(i)) for s, i in gone]

    async def _sync_forever(self, client: Redis) -> NoReturn:
        stop = client.connection_pool.disconnect
        while True:
            if not self._dirty:
                self._wake = trio.Event()
                await self._wake.wait()
            batch = list(self._dirty)[:BATCH]
            for key in batch:
                del self._dirty[key]
            ops: list[tuple[tuple[str, str], str | None]] = []
            for key in batch:
                info = self.tracker.local_info(*key)
                if info is not None and self._synced.get(key) != info:
                    ops.append((key, info))
                elif info is None and (key in self._synced or key in self._announced):
                    ops.append((key, None))
            if not ops:
                continue
            try:
                results = await _in_thread(self._apply, client, ops, stop=stop)
            except BaseException:
                # Unknown what was written: all of it again (idempotent).
                self._dirty.update(dict.fromkeys(batch))
                raise
            self._settle(ops, results)

    def _settle(
        self, ops: list[tuple[tuple[str, str], str | None]], results: list[int]
    ) -> None:
        for ((stream, id), info), result in zip(ops, results, strict=True):
            key = (stream, id)
            if info is not None:
                self._synced[key] = info
                if result == 1 and key not in self._announced:
                    self.tracker.announce("join", stream, id, info)
                self._announced.add(key)
            else:
                self._synced.pop(key, None)
                if result == 1:
                    self.tracker.announce("leave", stream, id)
                self._announced.discard(key)

    def _apply(
        self, client: Redis, ops: list[tuple[tuple[str, str], str | None]]
    ) -> list[int]:
        pipe = client.pipeline(transaction=False)
        for (stream, id), info in ops:
            field = _field(stream, id)
            if info is not None:
                args = (self.prefix, self.worker, stream, id, info, field)
                pipe.eval(_JOIN, 0, *args)
            else:
                announced = "1" if (stream, id) in self._announced else "0"
                args = (self.prefix, self.worker, stream, id, field, announced)
                pipe.eval(_LEAVE, 0, *args)
        return [int(r) for r in pipe.execute()]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def run_presence(tracker: PresenceTracker, url: str | None) -> None:
    """A cable's presence work, for as long as it runs: the grace timer,
    and with Redis (``url``) the shared view.

    Cancellation: prompt; the tracker goes back to its local backend.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tracker.run_graces)
        if url is None:
            return
        backend = RedisPresence(tracker, url, tracker.options)
        tracker.backend = backend
        try:
            # No Redis connection for a cable that never uses presence.
            await tracker.wanted.wait()
            await backend.run()
        finally:
            tracker.backend = tracker.local
            tracker.local.take_over(tracker.local_keys())
