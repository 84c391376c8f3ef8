"""Presence's cost per connect: the server's work for N clients' connect
and subscribe, with and without each subscriber joining the stream's
presence (``BENCH_PRESENCE``: a member of its own, a small info, events
off; bench_app.py's ``BenchChannel``).

Each run is a fresh server process (bench_app.py, any ``cable-*`` kind)
and run.py's two Node load generators, which open N sockets and subscribe
each; the server's pings are off, so only the connects are counted. Runs
alternate plain and presence (the order flipped every round), so a change
in the machine's load hits both alike. Two measures:

* ``cpu`` (the default): the server process's CPU time (user + system,
  from ``/proc``) over the connect phase, per connect; the medians of
  ``--rounds`` runs of each, and presence's share of a plain connect;
* ``callgrind``: the server runs under valgrind's callgrind; its counts
  are zeroed once it listens and dumped once every client is subscribed:
  instructions per connect, which other processes on the machine do not
  change (GC, allocation and the kernel's share aside: callgrind counts
  user-space instructions only).

Usage: ``python benchmarks/presence_cost.py [--method cpu|callgrind]
[--servers cable-direct,cable-hypercorn] [--connections 2000]
[--rounds 5]``. Results go to ``benchmarks/results/`` (not committed);
docs/benchmarks.md is the record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

from bench_common import raise_nofile_limit  # noqa: E402
from cases import connect_clients  # noqa: E402
from harness import (  # noqa: E402
    SERVERS,
    ensure_node_ref,
    free_port,
    loadgen_process,
    machine_busy_seconds,
    server_process,
)

MODES = ("plain", "presence")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--method", choices=("cpu", "callgrind"), default="cpu")
    p.add_argument("--servers", default="cable-direct")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument(
        "--rounds", type=int, default=None, help="runs of each (cpu 5, callgrind 1)"
    )
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--connect-timeout", type=float, default=300.0)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the logs (and callgrind's dumps, for callgrind_annotate) here",
    )
    args = p.parse_args(argv)
    args.kinds = [k for k in args.servers.split(",") if k]
    for kind in args.kinds:
        if kind not in SERVERS or not kind.startswith("cable-"):
            p.error(f"not a trio_cable server: {kind!r}")
    if not 2 <= args.connections <= 19_000:
        p.error("connections must be within 2..19000 (open-file limit)")
    if args.rounds is None:
        args.rounds = 5 if args.method == "cpu" else 1
    if args.method == "callgrind" and shutil.which("valgrind") is None:
        p.error("valgrind is needed for --method callgrind")
    return args


def callgrind_totals(out: Path) -> int:
    """The instruction count of callgrind's last dump to ``out``.N."""
    path = sorted(out.parent.glob(f"{out.name}.*"))[-1]
    for line in path.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


async def callgrind_control(option: str, pid: int) -> None:
    await trio.run_process(
        ["callgrind_control", option, str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def one_run(
    kind: str, mode: str, cfg: argparse.Namespace, log_dir: Path
) -> dict[str, Any]:
    """One server process of ``kind`` in ``mode``: N connects measured."""
    n = cfg.connections
    port = free_port()
    env = {
        "BENCH_PRESENCE": "1" if mode == "presence" else "0",
        "BENCH_PING_INTERVAL": "3600",
    }
    wrapper: list[str] = []
    out = log_dir / f"callgrind-{kind}-{mode}-{port}.out"
    if cfg.method == "callgrind":
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    async with AsyncExitStack() as stack:
        proc = await stack.enter_async_context(
            server_process(kind, port, log_dir, env, wrapper=wrapper, ready_timeout=300)
        )
        gens = [
            await stack.enter_async_context(loadgen_process(log_dir, i))
            for i in range(2)
        ]
        await trio.sleep(0.5)  # the server's start-up work is done
        if cfg.method == "callgrind":
            await callgrind_control("-z", proc.pid)
        result = await connect_clients(gens, [n - n // 2, n // 2], port, cfg, proc.pid)
        if cfg.method == "callgrind":
            await callgrind_control("-d", proc.pid)
            result["instructions_per_connect"] = callgrind_totals(out) / n
    seconds = time.monotonic() - t0
    # The machine's load meanwhile: every process's CPU (ours included).
    result["machine_cpu_pct"] = 100.0 * (machine_busy_seconds() - busy0) / seconds
    result.update(server=kind, mode=mode)
    if result["connected"] != n:
        raise RuntimeError(f"{kind} {mode}: {result['connected']} of {n} connected")
    return result


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Medians of ``key`` per mode, and presence's cost over plain."""
    med = {m: statistics.median(r[key] for r in runs if r["mode"] == m) for m in MODES}
    extra = med["presence"] - med["plain"]
    return {
        "plain": med["plain"],
        "presence": med["presence"],
        "extra": extra,
        "extra_pct": 100.0 * extra / med["plain"],
        "each": {m: [round(r[key], 1) for r in runs if r["mode"] == m] for m in MODES},
    }


async def bench(cfg: argparse.Namespace) -> dict[str, Any]:
    ensure_node_ref()
    raise_nofile_limit()
    key = (
        "instructions_per_connect"
        if cfg.method == "callgrind"
        else ("connect_server_cpu_us")
    )
    out: dict[str, Any] = {
        "method": cfg.method,
        "connections": cfg.connections,
        "rounds": cfg.rounds,
        "loadavg_before": loadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="trio-cable-presence-cost-") as tmp:
        if cfg.keep is not None:
            cfg.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(cfg.keep)
        for kind in cfg.kinds:
            runs = []
            for round_ in range(cfg.rounds):
                order = MODES if round_ % 2 == 0 else MODES[::-1]
                for mode in order:
                    run = await one_run(kind, mode, cfg, Path(tmp))
                    print(
                        f"{kind:16} {mode:9} {run[key]:12.1f} {key}"
                        f"  (machine {run['machine_cpu_pct']:.0f} % CPU)",
                        flush=True,
                    )
                    runs.append(run)
            out[kind] = {"summary": summarise(runs, key), "runs": runs}
    out["loadavg_after"] = loadavg()
    return out


def main() -> None:
    cfg = parse_args()
    result = trio.run(bench, cfg)
    for kind in cfg.kinds:
        s = result[kind]["summary"]
        print(
            f"{kind}: plain {s['plain']:.1f}, presence {s['presence']:.1f}, "
            f"+{s['extra']:.1f} ({s['extra_pct']:+.1f} %)"
        )
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = cfg.output or RESULTS / f"presence-cost-{cfg.method}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"-> {path}")


if __name__ == "__main__":
    main()
