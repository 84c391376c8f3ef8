"""Memory per retained message of stream history: in process, and in Redis.

* In process: a :class:`~trio_cable._history.HistoryStore` keeps ``count``
  broadcasts (payloads of about ``--size`` bytes, made inside the
  measurement: a retained message holds its payload alive); tracemalloc's
  growth over them, per message. Two shapes: one stream keeping all of
  them, and streams of 100 (the default limit) each.
* In Redis: a redis-server of our own (run.py's), a Redis cable keeping the
  same broadcasts through its real path (the Lua script, XADD to a capped
  Redis Stream); ``INFO memory`` ``used_memory`` growth and the sum of
  ``MEMORY USAGE`` over the history keys, per message.

Run: ``python benchmarks/history_memory.py [--count 100000] [--size 100]``.
Prints JSON; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import redis_process  # noqa: E402

from trio_cable import HistoryPolicy, RedisCable  # noqa: E402
from trio_cable._history import HistoryConfig, HistoryStore  # noqa: E402
from trio_cable.protocol.codec import encode_payload  # noqa: E402


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
        for n in range(count):
            await cable.broadcast(f"s:{n % streams}", payload(n, size))
        with trio.fail_after(300):
            while bridge.statistics().buffered:
                await trio.sleep(0.05)
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
    }


async def main_async(count: int, size: int) -> dict[str, Any]:
    payload_bytes = len(encode_payload(payload(0, size)))
    result: dict[str, Any] = {"payload_bytes": payload_bytes, "in_process": []}
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
