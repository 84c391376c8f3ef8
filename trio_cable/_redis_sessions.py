"""Sessions in Redis: a client may come back to another worker.

With Redis configured (``redis_url``, or ``TRIO_CABLE_REDIS_URL`` as the
cable starts), a dropped extended-protocol client's session is written
to Redis as JSON (``_session_json``: what crosses), and any worker of the
cable restores it, the one it dropped from after a restart too.

A session that cannot cross (``SessionNotPortable``, never raised out) is
kept in this process instead, logged once per cause; so is every session
while Redis is unreachable (one line as it goes, one as it is back).

Redis keeps a session under ``<prefix>session:<sid>`` and its expiry in
the sorted set ``<prefix>sessions``, on Redis' clock. Taking it (restore)
and claiming it (expiry) are Lua scripts, so it is taken once, by one
worker: a restore only before its expiry, a claim only after. Every
worker claims what is due (the keeping one at the expiry it knows, every
one at least each ``session_ttl`` (at most ``SWEEP``) seconds), so an
unrestored session's ``unsubscribed()`` runs once even when the worker it
dropped from died. The key's own EXPIRE (the TTL plus ``GRACE``) clears
what no worker was left to claim.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final

import trio

from ._broker import redis_url
from ._errors import SessionNotPortable
from ._redis import in_thread, redis_client
from ._session_json import SessionHost, decode_session, encode_session
from ._sessions import MemorySessionStore, Session, SessionKeeper

if TYPE_CHECKING:
    from redis import Redis

    from ._sessions import SessionStore

__all__ = ["RedisSessionStore", "session_keeper"]

log = logging.getLogger("trio_cable.sessions")

#: The most seconds between two looks for sessions due anywhere.
SWEEP: Final = 30.0
#: How long past its expiry Redis keeps a session no worker claimed.
GRACE: Final = 60.0
#: Sessions claimed per script call (a backlog takes several calls).
CLAIM_BATCH: Final = 100
#: The longest sid looked up: it is the client's input (ours have 16).
MAX_SID: Final = 64
#: Redis calls under way at once, per process: thousands of clients back
#: at once after an outage wait their turn (a call takes well under a
#: millisecond: docs/benchmarks.md), instead of a thread and a Redis
#: connection each.
MAX_CALLS: Final = 16

# Redis' clock for every expiry, so workers' clocks need not agree.
_NOW = (
    "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
)
#: KEYS: the session, the expiries; ARGV: blob, ttl ms, grace ms, sid.
_PUT = (
    _NOW
    + """redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2] + ARGV[3])
redis.call('ZADD', KEYS[2], now + ARGV[2], ARGV[4])
return now"""
)
#: KEYS: the session, the expiries; ARGV: sid. Nil once expired: an
#: expired session is the claimer's, whose unsubscribed() must run.
_TAKE = (
    _NOW
    + """local due = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not due or tonumber(due) <= now then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
local blob = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return blob"""
)
#: KEYS: the expiries; ARGV: key prefix, batch. {now, blobs, next expiry}.
_CLAIM = (
    _NOW
    + """local sids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,
  'LIMIT', 0, ARGV[2])
local blobs = {}
for _, sid in ipairs(sids) do
  redis.call('ZREM', KEYS[1], sid)
  local blob = redis.call('GET', ARGV[1] .. sid)
  if blob then
    redis.call('DEL', ARGV[1] .. sid)
    blobs[#blobs + 1] = blob
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {now, blobs, first[2] or false}"""
)


def session_keeper(host: SessionHost) -> SessionKeeper:
    """The cable's sessions: in this process, or in Redis when the cable
    runs with Redis (decided each time it starts)."""
    options = host.options
    memory = MemorySessionStore(options.max_sessions)

    def open_store() -> SessionStore:
        url = redis_url(options)
        return memory if url is None else RedisSessionStore(url, host, memory)

    return SessionKeeper(options.session_ttl, memory, open_store)


# -- the store ----------------------------------------------------------------


class RedisSessionStore:
    """Sessions in Redis (see the module doc), and in ``memory`` those
    that cannot go there. ``next_expiry`` is when this process next looks
    for sessions due, its own or any worker's."""

    def __init__(self, url: str, host: SessionHost, memory: MemorySessionStore):
        self.url = url
        self.host = host
        self.memory = memory
        options = host.options
        self._key = options.redis_prefix + "session:"
        self._due = options.redis_prefix + "sessions"
        self._sweep = min(SWEEP, max(options.session_ttl, 0.1))
        self._next_claim = -math.inf  # at once: another worker's may be due
        self._up = True
        self._told: set[str] = set()  # causes of unportable sessions, logged
        self._unlisted_told: set[str] = set()  # channels warned of
        self._calls = trio.CapacityLimiter(MAX_CALLS)
        # Clients between calls, one connection each (so stopping one
        # call's socket stops no other): at most MAX_CALLS of them.
        self._idle: list[Redis] = []
        self._closed = False

    def __len__(self) -> int:
        """Sessions kept in this process (Redis holds the others)."""
        return len(self.memory)

    def next_expiry(self) -> float:
        return min(self.memory.next_expiry(), self._next_claim)

    async def put(self, sid: str, session: Session, expires: float) -> list[Session]:
        try:
            blob = encode_session(session)
        except SessionNotPortable as exc:
            self._tell(str(exc))
            return await self.memory.put(sid, session, expires)
        self._tell_unlisted(session)
        ttl = max(1, int((expires - trio.current_time()) * 1000))
        args = [blob, ttl, int(GRACE * 1000), sid]
        if await self._eval(_PUT, [self._key + sid, self._due], args) is _AWAY:
            return await self.memory.put(sid, session, expires)
        self._next_claim = min(self._next_claim, expires)
        return []

    async def take(self, sid: str, now: float) -> Session | None:
        session = await self.memory.take(sid, now)
        if session is not None or len(sid) > MAX_SID:
            return session
        blob = await self._eval(_TAKE, [self._key + sid, self._due], [sid])
        if blob is _AWAY or blob is None:
            return None
        return self._decode(blob)

    async def due(self, now: float) -> list[Session]:
        out = await self.memory.due(now)
        if now < self._next_claim or now == math.inf:
            # (inf: the cable stops; the other workers claim what is due.)
            return out
        reply = await self._eval(_CLAIM, [self._due], [self._key, CLAIM_BATCH])
        here = trio.current_time()
        self._next_claim = here + self._sweep
        if reply is not _AWAY:
            redis_now, blobs, first = reply
            out += [s for s in map(self._decode, blobs) if s is not None]
            if first is not None:
                wait = (float(first) - int(redis_now)) / 1000
                self._next_claim = min(self._next_claim, here + wait)
        return out

    def _decode(self, blob: bytes) -> Session | None:
        try:
            return decode_session(blob, self.host)
        except ValueError as exc:
            log.error("a session in Redis cannot be read: %s", exc)
            return None

    def _tell(self, cause: str) -> None:
        if cause not in self._told:
            self._told.add(cause)
            log.error(
                "a session cannot go to Redis: %s; such sessions are kept in "
                "this process (only it can restore them)",
                cause,
            )

    def _tell_unlisted(self, session: Session) -> None:
        """Once per channel class: attributes a restore elsewhere loses."""
        for kept in session.subscriptions:
            cls = type(kept.channel)
            if cls.channel_name in self._unlisted_told:
                continue
            self._unlisted_told.add(cls.channel_name)
            unlisted = sorted(
                set(vars(kept.channel)) - {"_subscription", *cls.session_state}
            )
            if unlisted:
                log.warning(
                    "%s: attributes %s are not in session_state: a session "
                    "restored from Redis starts without them",
                    cls.channel_name,
                    ", ".join(unlisted),
                )

    def close(self) -> None:
        """Close its Redis connections (the cable stops); calls from now on
        find Redis away."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    async def _eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run ``script``; :data:`_AWAY` if Redis cannot be reached.

        Cancellation: waiting for a turn ends at once; a call under way is
        shielded (bounded by the 0.5 s connect and 2 s socket timeouts),
        so that what it did in Redis (a session taken, claimed or kept) is
        known and not lost; the cancellation strikes right after.
        """
        async with self._calls:
            if self._closed:
                return _AWAY
            client = self._idle.pop() if self._idle else self._client()
            try:
                with trio.CancelScope(shield=True):
                    result = await in_thread(
                        client.eval, script, len(keys), *keys, *args,
                        stop=client.connection_pool.disconnect,
                    )  # fmt: skip
            except BaseException as exc:
                client.close()  # never reused after a failure
                if not isinstance(exc, Exception):
                    raise
                if self._up:
                    self._up = False
                    log.warning(
                        "redis unreachable for sessions (%s): keeping them in "
                        "this process until it is back",
                        exc,
                    )
                return _AWAY
            self._put_back(client)
        if not self._up:
            self._up = True
            log.info("redis reachable again: sessions go to Redis")
        return result

    def _client(self) -> Redis:
        return redis_client(self.url, socket_timeout=2.0)

    def _put_back(self, client: Redis) -> None:
        if self._closed:  # the cable stopped during the call
            client.close()
        else:
            self._idle.append(client)


#: What :meth:`RedisSessionStore._eval` returns when Redis is away.
_AWAY: Final[Any] = object()
