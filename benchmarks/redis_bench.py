"""Cross-process broadcasts through the Redis bridge: throughput and latency.

Starts its own redis-server on a free port, a receiving process whose cable
has one local subscriber, and publishes from this process's cable:

* throughput: N broadcasts made as fast as possible in this process,
  counted as they are delivered in the other one;
* latency at light load: broadcasts every 10 ms, each carrying its send
  time, delivered in the other process (the Redis hop) and to a local
  subscriber here (the in-process baseline).

Run: ``python benchmarks/redis_bench.py [--count 50000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import redis_process  # noqa: E402

from trio_cable import Cable  # noqa: E402


class Recorder:
    """A hub subscriber that notes when each broadcast arrives."""

    identifier = ""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.count = 0
        self.first = self.last = 0.0

    def deliver(self, payload: str, frames: dict[str, str]) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if payload.startswith('{"t":'):
            self.latencies.append(now - json.loads(payload)["t"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def receiver(url: str, expected: int, probes: int) -> None:
    cable = Cable(redis_url=url)
    recorder = Recorder()
    async with cable.running():
        cable.stream_added("bench", recorder)
        await cable.streams_live(["bench"])
        print("ready", flush=True)
        with trio.move_on_after(120):
            while recorder.count < expected + probes:
                await trio.sleep(0.01)
    result = {
        "received": recorder.count,
        "first": recorder.first,
        "last": recorder.last,
        "latencies": recorder.latencies,
    }
    print(json.dumps(result), flush=True)


async def sender(url: str, count: int, probes: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--role", "receiver", "--url", url]
    command += ["--count", str(count), "--probes", str(probes)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)  # noqa: ASYNC220 (a benchmark helper; it only starts the process)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    cable = Cable(redis_url=url)
    local = Recorder()
    async with cable.running():
        cable.stream_added("bench", local)
        await cable.streams_live(["bench"])
        # light load: the Redis hop's latency
        for _ in range(probes):
            cable.broadcast_nowait("bench", {"t": time.time()})
            await trio.sleep(0.01)
        await trio.sleep(0.5)
        # throughput: as fast as this process can make them
        start = time.time()
        for n in range(count):
            await cable.broadcast("bench", {"n": n, "body": "x" * 100})
        made = time.time() - start
        result = json.loads(await trio.to_thread.run_sync(proc.stdout.readline))
    proc.wait(timeout=10)
    hop = result["latencies"]
    return {
        "broadcasts": count,
        "delivered_cross_process": result["received"] - probes,
        "made_per_s": round(count / made),
        "cross_process_per_s": round(count / (result["last"] - start)),
        "hop_p50_ms": round(percentile(hop, 0.5) * 1000, 3),
        "hop_p99_ms": round(percentile(hop, 0.99) * 1000, 3),
        "local_p50_ms": round(percentile(local.latencies, 0.5) * 1000, 3),
        "local_p99_ms": round(percentile(local.latencies, 0.99) * 1000, 3),
        "hop_mean_ms": round(statistics.mean(hop) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", default="sender", choices=["sender", "receiver"])
    parser.add_argument("--url")
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--probes", type=int, default=200)
    args = parser.parse_args()
    if args.role == "receiver":
        trio.run(receiver, args.url, args.count, args.probes)
        return
    result = trio.run(bench, args.count, args.probes)
    print(json.dumps(result, indent=2))


async def bench(count: int, probes: int) -> dict[str, Any]:
    """The sender's run against a redis-server of our own (run.py's)."""
    with tempfile.TemporaryDirectory(prefix="trio-cable-redis-") as data:
        async with redis_process(Path(data)) as url:
            return await sender(url, count, probes)


if __name__ == "__main__":
    main()
