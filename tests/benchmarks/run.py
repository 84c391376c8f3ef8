"""Benchmark driver: server processes against a Node load generator.

For each server kind and connection count it starts the server in its own
process and two ``loadgen.mjs`` processes (N/2 sockets each), then measures

* connect+subscribe rate (connections/s, and per-socket p50/p99 time),
* server memory per connection: VmRSS delta / connections,
* fan-out latency of 20 broadcasts at 200 ms intervals (p50/p99/max over
  every delivery) and the share delivered,
* the sustained deliveries/s of a burst (K broadcasts as fast as the
  server takes them, until all arrived or a time cap), with server and
  load-generator CPU use over the burst.

``--profile`` instead samples each server with py-spy during a burst (where
the CPU goes) and diffs tracemalloc snapshots around connecting the clients
(where the memory goes). See docs/benchmarks.md.

Usage: ``python tests/benchmarks/run.py [--quick] [--connections 1000,5000]
[--servers KIND,...] [--profile]``. Every loop is bounded in count and time;
every process started here is killed at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from bench_common import raise_nofile_limit  # noqa: E402
from harness import (  # noqa: E402
    SERVERS,
    Control,
    LoadGen,
    control_connection,
    cpu_times,
    free_port,
    loadgen_process,
    machine_busy_seconds,
    machine_irq_seconds,
    rss_kib,
    server_process,
    stop_process,
    wait_for_quiet,
)

# -- one case ------------------------------------------------------------------------


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    values = sorted(values)

    def at(q: float) -> float:
        return values[min(len(values) - 1, math.floor(q * len(values)))]

    return {"p50": at(0.5), "p99": at(0.99), "max": values[-1]}


async def each(gens: list[LoadGen], event: str, timeout: float) -> list[dict[str, Any]]:
    """Wait for ``event`` from every load generator at once."""
    results: list[dict[str, Any]] = [{} for _ in gens]

    async def one(i: int) -> None:
        results[i] = await gens[i].expect(event, timeout)

    async with trio.open_nursery() as nursery:
        for i in range(len(gens)):
            nursery.start_soon(one, i)
    return results


async def measure(
    gens: list[LoadGen],
    shares: list[int],
    control: Control,
    pid: int,
    action: str,
    phase: str,
    count: int,
    timeout: float,
    **data: Any,
) -> dict[str, Any]:
    """Arm the load generators, trigger ``action`` in the server, collect."""
    for gen, share in zip(gens, shares, strict=True):
        await gen.send(
            cmd="measure",
            phase=phase,
            expect=count * share,
            timeout_ms=timeout * 1000,
            latencies=action == "series",
        )
    await each(gens, "armed", 10)
    await control.perform("gc")
    await control.done("gc", 10)
    cpu0, t0 = cpu_times(pid), time.monotonic()
    busy0, irq0 = machine_busy_seconds(), machine_irq_seconds()
    await control.perform(action, phase=phase, count=count, **data)
    parts = await each(gens, "measured", timeout + 10)
    cpu1, t1 = cpu_times(pid), time.monotonic()
    busy1, irq1 = machine_busy_seconds(), machine_irq_seconds()
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    done = await control.done(action, 30)
    await control.perform("gc")
    gc_stats = (await control.done("gc", 10))["stats"]
    received = sum(p["received"] for p in parts)
    expected = count * sum(shares)
    sent = (
        min(p["min_sent"] for p in parts if p["min_sent"] is not None)
        if received
        else 0
    )
    last = max((p["last_arrival"] or 0) for p in parts)
    result: dict[str, Any] = {
        "messages": count,
        "expected": expected,
        "received": received,
        "delivered_pct": 100.0 * received / expected if expected else 0.0,
        "span_s": (last - sent) / 1000.0 if received else None,
        "server_cpu_pct": 100.0 * (user + system) / (t1 - t0),
        "server_cpu_s": user + system,
        "server_system_pct_of_cpu": 100.0 * system / (user + system)
        if user + system
        else None,
        "loadgen_cpu_pct": [100.0 * p["cpu_ms"] / p["wall_ms"] for p in parts],
        "softirq_cpu_pct": 100.0 * (irq1 - irq0) / (t1 - t0),
        # CPU used by every other process on the machine meanwhile
        "others_cpu_pct": 100.0
        * (busy1 - busy0 - user - system - sum(p["cpu_ms"] for p in parts) / 1000)
        / (t1 - t0),
        "closed_sockets": sum(p["closed"] for p in parts),
        "disconnect_frames": sum(p["disconnect_frames"] for p in parts),
        "pings": sum(p["pings"] for p in parts),
        "server": {k: v for k, v in done.items() if k not in ("done", "phase")},
        "gc": gc_stats,
    }
    if action == "series":
        result.update(quantiles([x for p in parts for x in p["latencies"]]))
        # per broadcast: [deliveries, worst latency ms], merged over the generators
        per_seq: dict[int, list[float]] = {}
        for p in parts:
            for seq, (got, worst) in p["per_seq"].items():
                merged = per_seq.setdefault(int(seq), [0, 0.0])
                merged[0] += got
                merged[1] = max(merged[1], worst)
        result["per_broadcast"] = [per_seq.get(i, [0, None]) for i in range(count)]
    elif received:
        result["deliveries_per_s"] = received / result["span_s"]
    return result


async def server_rss(control: Control, pid: int) -> int:
    """The server's RSS in KiB once its pending garbage is collected."""
    await control.perform("gc", collect=True)
    await control.done("gc", 60)
    return rss_kib(pid)


def burst_count(n: int, target: int) -> int:
    # Every broadcast is queued for every client at once: stay well under
    # the per-connection outbox bound (1024 frames) so nobody is "too slow".
    return max(5, min(500, target // n))


async def run_case(
    kind: str, n: int, cfg: argparse.Namespace, mode: str = "measure"
) -> dict[str, Any]:
    """One server process, N clients; ``mode`` is measure, profile or memory."""
    port = free_port()
    shares = [n - n // 2, n // 2]
    log_dir: Path = cfg.log_dir
    env = {"BENCH_TRACEMALLOC": "1"} if mode == "memory" else {}
    if cfg.gc_threshold:
        env["BENCH_GC_THRESHOLD"] = cfg.gc_threshold
    result: dict[str, Any] = {"server": kind, "connections": n, "mode": mode}
    result["background_cpu_pct"] = 100.0 * await wait_for_quiet(cfg.quiet_wait)
    async with AsyncExitStack() as stack:
        proc = await stack.enter_async_context(server_process(kind, port, log_dir, env))
        control = await stack.enter_async_context(control_connection(port))
        gens = [
            await stack.enter_async_context(loadgen_process(log_dir, i))
            for i in range(2)
        ]
        await trio.sleep(0.5)
        if mode == "memory":
            await control.perform("memory", op="mark")
            await control.done("memory", 30)
        rss0 = await server_rss(control, proc.pid)
        url = f"ws://127.0.0.1:{port}/cable"
        for gen, share in zip(gens, shares, strict=True):
            await gen.send(
                cmd="connect",
                url=url,
                n=share,
                concurrency=cfg.concurrency,
                timeout_ms=cfg.connect_timeout * 1000,
            )
        connected = await each(gens, "connected", cfg.connect_timeout + 10)
        ok = sum(c["ok"] for c in connected)
        elapsed = max(c["elapsed_ms"] for c in connected) / 1000.0
        # One ping interval: every connection has been pinged (a connection's
        # first sends allocate some of its buffers), as when idle for long.
        await trio.sleep(cfg.settle)
        rss1 = await server_rss(control, proc.pid)
        result.update(
            {
                "connected": ok,
                "connect_failed": sum(c["failed"] for c in connected),
                "connect_errors": [c["errors"] for c in connected if c["errors"]],
                "connect_per_s": ok / elapsed if elapsed else None,
                "connect_ms_p50": max(c["connect_ms"]["p50"] or 0 for c in connected),
                "connect_ms_p99": max(c["connect_ms"]["p99"] or 0 for c in connected),
                "rss_before_kib": rss0,
                "rss_after_kib": rss1,
                "kib_per_connection": (rss1 - rss0) / ok if ok else None,
            }
        )
        if cfg.gc_freeze:
            await control.perform("gc", freeze=True)
            result["gc_frozen"] = (await control.done("gc", 30))["frozen"]
        if mode == "memory":
            path = log_dir / f"memory-{kind}-{n}.json"
            await control.perform("memory", op="report", connections=ok, path=str(path))
            await control.done("memory", 900)  # tracemalloc is slow at 5,000
            result["memory"] = json.loads(path.read_text())
            return result
        burst = burst_count(n, cfg.burst_deliveries)
        burst_timeout = min(90.0, max(20.0, burst * n / 2500.0))
        if mode == "profile":
            result["burst"], result["profile"] = await profiled_burst(
                gens, shares, control, proc.pid, f"b{n}", burst, burst_timeout, cfg
            )
            return result
        result["series"] = await measure(
            gens,
            shares,
            control,
            proc.pid,
            "series",
            f"s{n}",
            cfg.broadcasts,
            # bounded, but long enough for a server that falls behind
            cfg.broadcasts * cfg.interval + max(15.0, cfg.broadcasts * n / 2000.0),
            interval=cfg.interval,
        )
        rss2 = await server_rss(control, proc.pid)
        result["rss_after_series_kib"] = rss2
        result["kib_per_connection_after_series"] = (rss2 - rss0) / ok if ok else None
        result["burst"] = await measure(
            gens, shares, control, proc.pid, "burst", f"b{n}", burst, burst_timeout
        )
        result["rss_after_burst_kib"] = await server_rss(control, proc.pid)
    return result


def find_py_spy() -> str:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return py_spy


async def profiled_burst(
    gens: list[LoadGen],
    shares: list[int],
    control: Control,
    pid: int,
    phase: str,
    count: int,
    timeout: float,
    cfg: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A burst with py-spy sampling the server; returns (burst, profile)."""
    py_spy = find_py_spy()
    out = cfg.log_dir / f"profile-{pid}.txt"
    # --native: samples in the garbage collector or in a syscall end in that
    # C function (it needs py-spy to pause the server for each sample)
    with open(cfg.log_dir / f"py-spy-{pid}.log", "wb") as log:  # noqa: ASYNC230
        spy = await trio.lowlevel.open_process(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "250",
                "--native",
                *cfg.py_spy_args,
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await trio.sleep(1.0)  # py-spy attaches
        burst = await measure(
            gens, shares, control, pid, "burst", phase, count, timeout
        )
    finally:
        with trio.CancelScope(shield=True):
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            with trio.move_on_after(20):
                await spy.wait()
            await stop_process(spy)
    return burst, report.summarise_profile(out.read_text(), burst)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--connections",
        default=None,
        help="comma-separated counts (default 1000,5000; --quick: 1000)",
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, of {', '.join(SERVERS)}",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1,000 connections and a smaller burst (under 2 minutes)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy CPU profile and tracemalloc memory breakdown instead",
    )
    p.add_argument("--py-spy-args", default="", help="extra py-spy record arguments")
    p.add_argument(
        "--gc-threshold",
        default="",
        help="gc.set_threshold() in every server, e.g. 50000,20,10 (default: Python's)",
    )
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() in every server once the clients are connected",
    )
    p.add_argument("--broadcasts", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument(
        "--burst-deliveries",
        type=int,
        default=None,
        help="deliveries per burst (default 100000; --quick: 40000)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="connects in flight per load generator",
    )
    p.add_argument("--connect-timeout", type=float, default=90.0)
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        help="wait up to this long for other processes to go quiet before "
        "each case (default 120 s; --quick: 10 s)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=3.5,
        help="seconds between connecting and measuring RSS (one ping interval)",
    )
    p.add_argument("--output", type=Path, default=None, help="the JSON result file")
    p.add_argument(
        "--no-docs", action="store_true", help="do not update docs/benchmarks.md"
    )
    args = p.parse_args(argv)
    args.connection_counts = [
        int(x)
        for x in (args.connections or ("1000" if args.quick else "1000,5000")).split(
            ","
        )
    ]
    args.py_spy_args = args.py_spy_args.split()
    args.server_kinds = [s for s in args.servers.split(",") if s]
    for kind in args.server_kinds:
        if kind not in SERVERS:
            p.error(f"unknown server {kind!r}")
    if args.quiet_wait is None:
        args.quiet_wait = 10.0 if args.quick else 120.0
    if args.burst_deliveries is None:
        args.burst_deliveries = 40_000 if args.quick else 100_000
    if any(n > 19_000 or n < 2 for n in args.connection_counts):
        p.error("connections must be within 2..19000 (open-file limit)")
    return args


async def main_async(cfg: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Run every case, saving ``doc`` after each (a crash keeps the rest)."""
    modes = ("profile", "memory") if cfg.profile else ("measure",)
    for n in cfg.connection_counts:
        for kind in cfg.server_kinds:
            for mode in modes:
                started = time.monotonic()
                print(f"-- {kind}, {n} connections ({mode})", flush=True)
                for _attempt in range(2):
                    result = await run_case(kind, n, cfg, mode)
                    others = result.get("burst", {}).get("others_cpu_pct", 0.0)
                    result["others_busy"] = others > 25.0
                    if not result["others_busy"]:
                        break
                    # another workload took CPU during the burst: once more
                    print(f"   other processes took {others:.0f}% of a CPU", flush=True)
                result["wall_s"] = time.monotonic() - started
                print(report.one_line(result), flush=True)
                doc["results"].append(result)
                cfg.output.write_text(json.dumps(doc, indent=1) + "\n")
                await trio.sleep(1.0)  # let the kernel reap the closed sockets


def default_output(cfg: argparse.Namespace) -> Path:
    tuned = "-gc" if cfg.gc_threshold or cfg.gc_freeze else ""
    if cfg.profile:
        counts = "-".join(str(n) for n in cfg.connection_counts)
        name = f"profile-{counts}.json"
    else:
        name = f"results{tuned}.json"
    if cfg.quick:
        return Path(tempfile.gettempdir()) / f"trio-cable-bench-{name}"
    return HERE / name


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    hard = raise_nofile_limit()  # inherited by every process started here
    need = max(cfg.connection_counts) + 200
    if hard < need:
        raise SystemExit(f"open-file hard limit {hard} < {need}")
    cfg.log_dir = Path(tempfile.mkdtemp(prefix="trio-cable-bench-"))
    cfg.output = cfg.output or default_output(cfg)
    print(f"logs in {cfg.log_dir}", flush=True)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "machine": report.machine_info(),
        "config": {
            "connections": cfg.connection_counts,
            "broadcasts": cfg.broadcasts,
            "interval_s": cfg.interval,
            "burst_deliveries": cfg.burst_deliveries,
            "quick": cfg.quick,
            "profile": cfg.profile,
            "gc_threshold": cfg.gc_threshold,
            "gc_freeze": cfg.gc_freeze,
        },
        "results": [],
        "wall_s": None,
    }
    trio.run(main_async, cfg, doc)
    doc["wall_s"] = time.monotonic() - started
    cfg.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\nresults written to {cfg.output}")
    print(report.text_table(doc))
    if not cfg.quick and not cfg.no_docs:
        report.update_docs(ROOT / "docs" / "benchmarks.md", doc)
        print("docs/benchmarks.md updated")


if __name__ == "__main__":
    main()
