"""Benchmark driver: every transport side by side against a Node load generator.

For each server kind and connection count it starts the server in its own
process and two ``loadgen.mjs`` processes (N/2 sockets each), then measures

* connect+subscribe rate (connections/s, and per-socket p50/p99 time),
* server memory per idle subscribed connection: VmRSS delta / connections,
* the echo round trip (BenchChannel's ``echo`` action, p50/p99) on a few
  hundred sockets while the rest stay idle,
* fan-out latency of 20 broadcasts at 200 ms intervals (p50/p99/max over
  every delivery) and the share delivered,
* the sustained deliveries/s of a burst (K broadcasts as fast as the
  server takes them, until all arrived or a time cap), with server and
  load-generator CPU use over the burst.

The kinds are trio_cable on each transport (``cable-direct``, the default;
``cable-trio-websocket``; ``cable-hypercorn``), a minimal Node ``ws``
server (``node-ws``, node-ref/: the load generator's and the machine's
ceiling) and the bare trio-websocket / Hypercorn loops (``bare-*``, not
run by default). Then the cross-process case: a redis-server started
here, two ``cable-direct`` processes bridged through it, the clients on
one, the broadcasts made in the other (``--redis-connections``).

``--profile`` instead samples each server with py-spy during a burst (where
the CPU goes) and diffs tracemalloc snapshots around connecting the clients
(where the memory goes). See docs/benchmarks.md.

Usage: ``python benchmarks/run.py [--quick] [--connections 1000,5000,10000]
[--servers KIND,...] [--tune-gc] [--profile]``. Every loop is bounded in count
and time, the whole run by ``--budget`` (cases past it are skipped); every
process started here is killed at the end. The JSON results go to
``benchmarks/results/`` (not committed: they describe one machine on one day;
docs/benchmarks.md is the record).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# ignored by git: raw results describe one machine (docs/benchmarks.md is the record)
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import report  # noqa: E402
from bench_common import raise_nofile_limit  # noqa: E402
from cases import run_case, run_redis_case  # noqa: E402
from harness import DEFAULT_SERVERS, REDIS_KIND, SERVERS, ensure_node_ref  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--connections",
        default=None,
        help="comma-separated counts (default 1000,5000,10000; --quick: 1000)",
    )
    p.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help=f"comma-separated, of {', '.join(SERVERS)} (default: the first four)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="1,000 connections and a smaller burst (about 2 minutes)",
    )
    p.add_argument(
        "--redis-connections",
        type=int,
        default=1000,
        help="subscribers in the cross-process case through Redis (0: skip it)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy CPU profile and tracemalloc memory breakdown instead",
    )
    p.add_argument("--py-spy-args", default="", help="extra py-spy record arguments")
    p.add_argument(
        "--tune-gc",
        action="store_true",
        help="trio_cable.tune_gc() in every Python server (tune_gc=True)",
    )
    p.add_argument(
        "--gc-threshold",
        default="",
        help="gc.set_threshold() in every Python server, e.g. 50000,20,10 "
        "(default: Python's)",
    )
    p.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() in every server once the clients are connected",
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="the benchmark stream keeps history (in Redis in the Redis case)",
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
        "--echo-sockets",
        type=int,
        default=200,
        help="sockets doing echo round trips at once (0: skip the echo)",
    )
    p.add_argument("--echo-rounds", type=int, default=5, help="echoes per socket")
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
        "each case (default 20 s; --quick: 5 s)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=3.5,
        help="seconds between connecting and measuring RSS (one ping interval)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="minutes for the whole run; cases that would start after it "
        "are skipped, and disturbed cases are not rerun past 60%% of it "
        "(default 25; --quick: 4)",
    )
    p.add_argument("--output", type=Path, default=None, help="the JSON result file")
    p.add_argument(
        "--no-docs", action="store_true", help="do not update docs/benchmarks.md"
    )
    p.add_argument(
        "--no-http-trigger",
        dest="http_trigger",
        action="store_false",
        help="skip the HTTP-triggered series and burst (POST /_broadcast)",
    )
    args = p.parse_args(argv)
    default_counts = "1000" if args.quick else "1000,5000,10000"
    args.connection_counts = [
        int(x) for x in (args.connections or default_counts).split(",")
    ]
    args.py_spy_args = args.py_spy_args.split()
    args.server_kinds = [s for s in args.servers.split(",") if s]
    for kind in args.server_kinds:
        if kind not in SERVERS:
            p.error(f"unknown server {kind!r}")
    if args.profile:  # py-spy and tracemalloc see Python servers only
        args.server_kinds = [k for k in args.server_kinds if k != "node-ws"]
    if args.quiet_wait is None:
        args.quiet_wait = 5.0 if args.quick else 20.0
    if args.burst_deliveries is None:
        args.burst_deliveries = 40_000 if args.quick else 100_000
    if args.budget is None:
        args.budget = 4.0 if args.quick else 25.0
    counts = [*args.connection_counts, args.redis_connections or 2]
    if any(n > 19_000 or n < 2 for n in counts):
        p.error("connections must be within 2..19000 (open-file limit)")
    if args.echo_sockets > min(args.connection_counts):
        p.error("--echo-sockets must not exceed the smallest connection count")
    args.server_env = {}
    if args.tune_gc:
        args.server_env["BENCH_TUNE_GC"] = "1"
    if args.gc_threshold:
        args.server_env["BENCH_GC_THRESHOLD"] = args.gc_threshold
    if args.history:
        args.server_env["BENCH_HISTORY"] = "1"
    return args


async def main_async(cfg: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Run every case, saving ``doc`` after each (a crash keeps the rest)."""
    started = time.monotonic()
    budget = cfg.budget * 60.0

    def save(result: dict[str, Any]) -> None:
        doc["results"].append(result)
        cfg.output.write_text(json.dumps(doc, indent=1) + "\n")

    def over_budget(kind: str, n: int, mode: str) -> bool:
        if time.monotonic() - started < budget:
            return False
        print(f"-- {kind}, {n} connections: skipped (over the time budget)")
        save({"server": kind, "connections": n, "mode": mode, "skipped": "budget"})
        return True

    modes = ("profile", "memory") if cfg.profile else ("measure",)
    for n in cfg.connection_counts:
        for kind in cfg.server_kinds:
            for mode in modes:
                if over_budget(kind, n, mode):
                    continue
                case_started = time.monotonic()
                print(f"-- {kind}, {n} connections ({mode})", flush=True)
                for _attempt in range(2):
                    result = await run_case(kind, n, cfg, mode)
                    others = result.get("burst", {}).get("others_cpu_pct", 0.0)
                    result["others_busy"] = others > 25.0
                    if not result["others_busy"]:
                        break
                    if cfg.quick or time.monotonic() - started > 0.6 * budget:
                        break  # a sanity run, or no time to run it again
                    # another workload took CPU during the burst: once more
                    print(f"   other processes took {others:.0f}% of a CPU", flush=True)
                result["wall_s"] = time.monotonic() - case_started
                print(report.one_line(result), flush=True)
                save(result)
                await trio.sleep(1.0)  # let the kernel reap the closed sockets
    n = cfg.redis_connections
    if n and not cfg.profile and not over_budget(REDIS_KIND, n, "redis"):
        case_started = time.monotonic()
        print(f"-- {REDIS_KIND}, {n} connections (two servers, one Redis)", flush=True)
        result = await run_redis_case(n, cfg)
        result["others_busy"] = result["burst"].get("others_cpu_pct", 0.0) > 25.0
        result["wall_s"] = time.monotonic() - case_started
        print(report.one_line(result), flush=True)
        save(result)


def default_output(cfg: argparse.Namespace) -> Path:
    tuned = "-gc" if cfg.tune_gc or cfg.gc_threshold or cfg.gc_freeze else ""
    if cfg.profile:
        counts = "-".join(str(n) for n in cfg.connection_counts)
        name = f"profile-{counts}.json"
    else:
        name = f"results{tuned}{'-history' if cfg.history else ''}.json"
    if cfg.quick:  # a sanity run never overwrites a full one
        name = f"quick-{name}"
    return RESULTS / name


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    hard = raise_nofile_limit()  # inherited by every process started here
    need = max(cfg.connection_counts) + 200
    if hard < need:
        raise SystemExit(f"open-file hard limit {hard} < {need}")
    ensure_node_ref()
    cfg.log_dir = Path(tempfile.mkdtemp(prefix="trio-cable-bench-"))
    cfg.output = cfg.output or default_output(cfg)
    cfg.output.parent.mkdir(parents=True, exist_ok=True)
    print(f"logs in {cfg.log_dir}", flush=True)
    started = time.monotonic()
    doc: dict[str, Any] = {
        "machine": report.machine_info(),
        "config": {
            "connections": cfg.connection_counts,
            "servers": cfg.server_kinds,
            "redis_connections": cfg.redis_connections,
            "broadcasts": cfg.broadcasts,
            "interval_s": cfg.interval,
            "burst_deliveries": cfg.burst_deliveries,
            "echo_sockets": cfg.echo_sockets,
            "echo_rounds": cfg.echo_rounds,
            "quick": cfg.quick,
            "profile": cfg.profile,
            "tune_gc": cfg.tune_gc,
            "gc_threshold": cfg.gc_threshold,
            "gc_freeze": cfg.gc_freeze,
            "history": cfg.history,
            "budget_min": cfg.budget,
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
