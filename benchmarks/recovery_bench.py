"""A mass recovery: many clients cut at once, reconnecting and recovering.

``--clients`` clients of the extended protocol (``actioncable-v1-ext-json``)
in one Node process (``recovery_loadgen.mjs``, on the ``ws`` package)
connect to a cable served here (``serve_cable``, the direct transport) and
subscribe to one stream with history. After ``--warmup`` broadcasts have
reached every one of them, the generator terminates every socket at once
(no close frame: what a broken network looks like) and each client
reconnects ``--away`` seconds later, all at once, with its session id (a
failed attempt is retried after 100-600 ms). Meanwhile this process
broadcasts ``--missed`` more messages at ``--rate`` per second, all made
while the clients are away. Each client resumes its session and asks for
history from its last epoch/offset (or, not restored, subscribes again
with it), as ``@anycable/core`` does.

Reported, counted from the moment the clients start reconnecting: the
time until each client has its history (``confirm_history``) and until
it has received every message exactly once, in order (p50/p99/max over
the clients; the max is the last one);
messages lost (target 0), duplicates, gaps; sessions restored; history
confirmed or rejected; replayed deliveries; reconnect attempts; CPU of the
server (this process) and of the generator. Two modes: history and
sessions in this process's memory, and in a redis-server of our own
(``--modes``).

Run: ``python benchmarks/recovery_bench.py [--clients 5000] [--missed 50]``.
Prints JSON; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import ensure_node_ref, loadgen_process, redis_process  # noqa: E402

from trio_cable import Cable, Channel, HistoryPolicy, serve_cable  # noqa: E402

STREAM = "feed"


def feed_cable(redis_url: str | None) -> Cable:
    cable = Cable(
        redis_url=redis_url,
        history={STREAM: HistoryPolicy(limit=1000, ttl=300)},
        session_ttl=300,
    )

    @cable.channel
    class FeedChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(STREAM)

    return cable


async def broadcast_numbered(
    cable: Cable, first: int, count: int, rate: float
) -> float:
    """Broadcasts ``{"n": first}``... at ``rate``/s; the wall-clock time
    (ms since the epoch) of the last one."""
    start = trio.current_time()
    for i in range(count):
        await cable.broadcast(STREAM, {"n": first + i})
        last = time.time() * 1000
        await trio.sleep_until(start + (i + 1) / rate)  # pacing
    return last


async def run_mode(
    redis_url: str | None, log_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    cable = feed_cable(redis_url)
    total = args.warmup + args.missed
    async with cable.running(), trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_cable, cable, "127.0.0.1", 0))
        async with loadgen_process(log_dir, 0, "recovery_loadgen.mjs") as gen:
            url = f"ws://127.0.0.1:{port}/cable"
            await gen.send(cmd="connect", url=url, n=args.clients, concurrency=200)
            connected = await gen.expect("connected", 300)
            if connected["failed"]:
                raise RuntimeError(f"not every client connected: {connected}")
            await gen.send(cmd="wait", count=args.warmup, timeout_ms=60_000)
            await broadcast_numbered(cable, 0, args.warmup, args.rate)
            warmed = await gen.expect("waited", 90)
            if warmed["complete"] != args.clients:
                raise RuntimeError(f"the warm-up did not reach everyone: {warmed}")
            cpu_before = time.process_time()
            await gen.send(
                cmd="cut",
                count=total,
                away_ms=round(args.away * 1000),
                timeout_ms=round(args.cap * 1000),
                retry_ms=[100, 600],
            )
            cut = await gen.expect("cut", 30)
            last = await broadcast_numbered(cable, args.warmup, args.missed, args.rate)
            recovered = await gen.expect("recovered", args.cap + 30)
            server_cpu = time.process_time() - cpu_before
        nursery.cancel_scope.cancel()
    # The generator's clock and ours are the same machine's wall clock.
    if last > recovered["started_epoch_ms"]:
        raise RuntimeError("a 'missed' broadcast came after the clients were back")
    return {
        "mode": "redis" if redis_url else "in-process",
        "clients": args.clients,
        "connect_s": round(connected["elapsed_ms"] / 1000, 2),
        "messages": total,
        "missed_broadcast_after_cut": args.missed,
        "rate_per_s": args.rate,
        "away_s": args.away,
        "last_missed_broadcast_after_cut_ms": round(last - cut["epoch_ms"]),
        "recovered": recovered,
        "server_cpu_s": round(server_cpu, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_node_ref()
    # Each side holds a socket per client (the generator inherits this).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = []
    with tempfile.TemporaryDirectory(prefix="trio-cable-recovery-") as tmp:
        log_dir = Path(tmp)
        for mode in args.modes:
            if mode == "redis":
                async with redis_process(log_dir) as url:
                    results.append(await run_mode(url, log_dir, args))
            else:
                results.append(await run_mode(None, log_dir, args))
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--missed", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--away", type=float, default=1.0, help="seconds")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("in-process", "redis"),
        default=["in-process", "redis"],
    )
    args = parser.parse_args()
    print(json.dumps(trio.run(main_async, args), indent=2))


if __name__ == "__main__":
    main()
