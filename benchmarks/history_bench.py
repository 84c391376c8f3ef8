"""Stream history's costs: fan-out CPU, and memory per retained message.

* Fan-out CPU (one process, no sockets): 5,000 confirmed subscriptions of
  one stream on a hub, their frames handed to a send that drops them;
  ``count`` broadcasts made with no history, with the history kept in
  process, and as a worker delivers broadcasts positioned in Redis (the
  message parsed, the position on every frame); CPU time per delivery.
  The sockets' cost is left out on purpose: this is what history adds.
* In process: a :class:`~trio_cable._history.HistoryStore` keeps ``count``
  broadcasts (payloads of about ``--size`` bytes, made inside the
  measurement: a retained message holds its payload alive); tracemalloc's
  growth over them, per message. Two shapes: one stream keeping all of
  them, and streams of 100 (the default limit) each.
* In Redis: a redis-server of our own (run.py's), a Redis cable keeping the
  same broadcasts through its real path (the Lua script, XADD to a capped
  Redis Stream); ``INFO memory`` ``used_memory`` growth and the sum of
  ``MEMORY USAGE`` over the history keys, per message; and how fast one
  process's broadcasts were positioned in Redis (made until all written).

Run: ``python benchmarks/history_bench.py [--count 100000] [--size 100]``.
Prints JSON; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import redis_process  # noqa: E402

from trio_cable import HistoryPolicy, RedisCable  # noqa: E402
from trio_cable._history import HistoryConfig, HistoryStore  # noqa: E402
from trio_cable._hub import Hub  # noqa: E402
from trio_cable.protocol.codec import encode_payload  # noqa: E402
from trio_cable.protocol.dialects import DIALECTS  # noqa: E402
from trio_cable.protocol.ext import Position  # noqa: E402
from trio_cable.protocol.subscription import (  # noqa: E402
    ChannelRules,
    ProtocolSettings,
    ServerSubscription,
)


class _Owner:
    """The protocol side a subscription sends through: frames dropped."""

    id = "bench"
    dialect = DIALECTS["actioncable-v1-json"]
    settings = ProtocolSettings()

    def send(self, frame: str) -> None:
        pass

    def forget(self, sub: ServerSubscription) -> None:
        pass

    def refuse(self, command: Any, reason: str, message: str, **_: Any) -> None:
        pass


def fan_out(mode: str, subscribers: int, broadcasts: int, size: int) -> float:
    """CPU seconds per delivery: ``broadcasts`` to ``subscribers``."""
    hub = Hub()
    if mode == "in-process":
        hub.history = HistoryStore(HistoryConfig({"bench": None}))
    owner = _Owner()
    rules = ChannelRules("Bench", (), ())
    for n in range(subscribers):
        sub = ServerSubscription(owner, f'{{"channel":"Bench","n":{n % 10}}}', rules)
        sub.confirm()
        hub.add("bench", sub)
    payloads = [encode_payload(payload(n, size)) for n in range(broadcasts)]
    gc.collect()
    start = time.process_time()
    if mode == "redis":  # as RedisHistoryBridge._deliver hands them over
        for n, data in enumerate(payloads, 1):
            epoch, offset, body = f"e1f2a3b4 {n} {data}".split(" ", 2)
            hub.publish_at("bench", body, Position("bench", epoch, int(offset)))
    else:
        for data in payloads:
            hub.publish("bench", data)
    return (time.process_time() - start) / (subscribers * broadcasts)


def fan_outs(size: int, rounds: int = 5) -> dict[str, Any]:
    """The best of ``rounds`` interleaved runs of each mode (the least
    disturbed by other work), in deliveries per CPU second."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for mode in ("off", "in-process", "redis"):
            cost = fan_out(mode, 5000, 200, size)
            best[mode] = min(best.get(mode, cost), cost)
    return {
        "subscribers": 5000,
        "broadcasts": 200,
        "deliveries_per_cpu_s": {m: round(1 / c) for m, c in best.items()},
        "cost_vs_off_pct": {
            m: round(100 * (c / best["off"] - 1), 1) for m, c in best.items()
        },
    }


def payload(n: int, size: int) -> dict[str, Any]:
    return {"n": n, "body": "x" * size}


def in_process(count: int, size: int, per_stream: int) -> dict[str, Any]:
    policy = HistoryPolicy(limit=per_stream, ttl=3600)
    store = HistoryStore(HistoryConfig({"s:*": policy}))
    streams = max(1, count // per_stream)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(count):
        store.append(f"s:{n % streams}", encode_payload(payload(n, size)))
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert store.retained() == count
    return {
        "streams": streams,
        "per_stream": per_stream,
        "messages": count,
        "bytes_per_message": round(grown / count),
    }


async def in_redis(url: str, count: int, size: int, per_stream: int) -> dict[str, Any]:
    import redis

    policy = HistoryPolicy(limit=per_stream, ttl=3600)
    streams = max(1, count // per_stream)
    client = redis.Redis.from_url(url)
    used_before = int(client.info("memory")["used_memory"])
    cable = RedisCable(url, history={"s:*": policy}, redis_buffer=count)
    async with cable.running():
        bridge = cable.bridge
        assert bridge is not None
        start = time.perf_counter()
        for n in range(count):
            await cable.broadcast(f"s:{n % streams}", payload(n, size))
        with trio.fail_after(300):
            while bridge.statistics().buffered:
                await trio.sleep(0.01)
        stored_in = time.perf_counter() - start
    used_after = int(client.info("memory")["used_memory"])
    keys = list(client.scan_iter(match="trio_cable:history*", count=1000))
    usage = sum(int(client.memory_usage(key) or 0) for key in keys)
    entries = sum(int(client.xlen(key)) for key in keys if b"history-meta:" not in key)
    client.close()
    assert entries == count, (entries, count)
    return {
        "streams": streams,
        "per_stream": per_stream,
        "messages": count,
        "used_memory_bytes_per_message": round((used_after - used_before) / count),
        "memory_usage_bytes_per_message": round(usage / count),
        # made and positioned in Redis, one process (wall clock)
        "stored_per_s": round(count / stored_in),
    }


async def main_async(count: int, size: int) -> dict[str, Any]:
    payload_bytes = len(encode_payload(payload(0, size)))
    result: dict[str, Any] = {"payload_bytes": payload_bytes}
    result["fan_out"] = fan_outs(size)
    result["in_process"] = []
    result["redis"] = []
    for per_stream in (count, 100):
        result["in_process"].append(in_process(count, size, per_stream))
        with tempfile.TemporaryDirectory(prefix="trio-cable-redis-") as data:
            async with redis_process(Path(data)) as url:
                result["redis"].append(await in_redis(url, count, size, per_stream))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(trio.run(main_async, args.count, args.size), indent=2))


if __name__ == "__main__":
    main()
