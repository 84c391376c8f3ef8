"""Sessions in Redis: what a session costs there, and a mass return.

Starts its own redis-server on a free port and two cables in this process
(two workers sharing it; the clients are in-memory test clients, so the
figures are the server side's). ``--clients`` extended-protocol clients
connect to worker A, subscribe to one channel (one stream, two
``session_state`` attributes) and drop: A writes each session to Redis.
Then all of them come back at once to worker B with their sids:

* Redis memory per kept session (``used_memory`` before and after, over
  the count) and the size of one session's JSON;
* keeping: drops per second (each one a Redis call);
* the mass return: how long until every client has its session back on
  the other worker, and how many were restored (target: all of them);
* the store's own calls, probed directly: ``--probe`` keeps one after
  another, then as many takes at once (ms per call).

Run: ``python benchmarks/redis_sessions_bench.py [--clients 2000] [--probe 300]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import redis_process  # noqa: E402

from trio_cable import Cable, Channel  # noqa: E402
from trio_cable._redis_sessions import RedisSessionStore  # noqa: E402
from trio_cable._sessions import MemorySessionStore, Session  # noqa: E402
from trio_cable.testing import cable_test_client  # noqa: E402

EXT = ["actioncable-v1-ext-json"]


def worker(url: str) -> Cable:
    cable = Cable(redis_url=url)

    @cable.connect
    async def who(request: Any) -> dict[str, str]:
        return {"user": request.query.get("user", "guest")}

    @cable.channel
    class CartChannel(Channel):
        session_state = ("items", "shop")

        async def subscribed(self) -> None:
            self.items: list[str] = ["tea"]
            self.shop = self.params.get("shop", "s1")
            self.stream_from(f"cart:{self.current_user['user']}")

    return cable


def used_memory(url: str) -> int:
    with redis.Redis.from_url(url) as client:
        return int(client.info("memory")["used_memory"])


async def probe(url: str, host: Cable, count: int) -> dict[str, float]:
    """ms per store call: ``count`` keeps in turn, then ``count`` takes at
    once (each a Redis script run in a worker thread)."""
    store = RedisSessionStore(url, host, MemorySessionStore(10))
    try:
        expires = trio.current_time() + 300
        start = time.perf_counter()
        for i in range(count):
            await store.put(f"probe{i}", Session({"user": i}), expires)
        put = (time.perf_counter() - start) / count
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(store.take, f"probe{i}", trio.current_time())
        take = (time.perf_counter() - start) / count
    finally:
        store.close()
    return {"keep_ms": put * 1000, "take_ms_concurrent": take * 1000}


async def bench(clients: int, probes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        async with redis_process(Path(data)) as url:
            a, b = worker(url), worker(url)
            async with a.running(), b.running():
                before = used_memory(url)
                sids = []
                start = time.perf_counter()
                for i in range(clients):
                    query = {"user": f"user{i}"}
                    async with cable_test_client(
                        a, subprotocols=EXT, query=query
                    ) as client:
                        await client.subscribe("CartChannel", shop="s1")
                        sids.append(client.welcome["sid"])
                kept_in = time.perf_counter() - start
                after = used_memory(url)
                with redis.Redis.from_url(url) as r:
                    blob = r.get(f"trio_cable:session:{sids[0]}") or b""
                    in_redis = int(r.zcard("trio_cable:sessions"))

                restored = 0

                async def back(sid: str) -> None:
                    nonlocal restored
                    async with cable_test_client(
                        b, subprotocols=EXT, query={"sid": sid}
                    ) as client:
                        restored += bool(client.welcome.get("restored"))

                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for sid in sids:
                        nursery.start_soon(back, sid)
                returned_in = time.perf_counter() - start
                calls = await probe(url, a, probes)
    return {
        "clients": clients,
        "kept_in_redis": in_redis,
        "redis_bytes_per_session": (after - before) / clients,
        "session_json_bytes": len(blob),
        "session_json": json.loads(blob) if blob else None,
        "keeping_per_second": clients / kept_in,
        "mass_return_seconds": returned_in,
        "restored": restored,
        "restores_per_second": clients / returned_in,
        **calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--probe", type=int, default=300)
    args = parser.parse_args()
    result = trio.run(bench, args.clients, args.probe)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
