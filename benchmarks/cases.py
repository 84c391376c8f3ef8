"""One benchmark case: a server process (or two and a Redis), two load
generators, and the phases measured against them (see run.py)."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from harness import (
    REDIS_KIND,
    Control,
    HttpTrigger,
    LoadGen,
    control_connection,
    cpu_times,
    free_port,
    http_trigger_env,
    loadgen_process,
    machine_busy_seconds,
    machine_irq_seconds,
    redis_process,
    rss_kib,
    server_process,
    stop_process,
    wait_for_quiet,
)
from profiles import summarise_profile

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
    *,
    publisher: tuple[Control, int] | None = None,
    trigger: HttpTrigger | None = None,
    **data: Any,
) -> dict[str, Any]:
    """Arm the load generators, trigger ``action`` in the server, collect.

    ``control`` and ``pid`` are the server the clients are connected to
    (its CPU and GC are measured); ``publisher``, if given, is another
    server's (control, pid) that makes the broadcasts instead (through
    Redis); ``trigger``, if given, makes them in the same server through
    ``POST /_broadcast`` instead of the control socket."""
    maker: Control | HttpTrigger
    maker, maker_pid = publisher or (control, pid)
    if trigger is not None:
        maker = trigger
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
    await control.done("gc", 60)
    cpu0, t0 = cpu_times(pid), time.monotonic()
    maker0 = cpu_times(maker_pid)
    busy0, irq0 = machine_busy_seconds(), machine_irq_seconds()
    await maker.perform(action, phase=phase, count=count, **data)
    parts = await each(gens, "measured", timeout + 10)
    cpu1, t1 = cpu_times(pid), time.monotonic()
    maker1 = cpu_times(maker_pid)
    busy1, irq1 = machine_busy_seconds(), machine_irq_seconds()
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    # the publisher's CPU is its own figure, not "other processes'"
    publisher_s = sum(maker1) - sum(maker0) if publisher is not None else 0.0
    # generous: a loaded server may answer long after the generators gave up
    done = await maker.done(action, 120)
    await control.perform("gc")
    # generous: a server on a loaded machine may still be delivering
    gc_stats = (await control.done("gc", 60))["stats"]
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
        * (
            busy1
            - busy0
            - user
            - system
            - publisher_s
            - sum(p["cpu_ms"] for p in parts) / 1000
        )
        / (t1 - t0),
        "closed_sockets": sum(p["closed"] for p in parts),
        "disconnect_frames": sum(p["disconnect_frames"] for p in parts),
        "pings": sum(p["pings"] for p in parts),
        "server": {k: v for k, v in done.items() if k not in ("done", "phase")},
        "gc": gc_stats,
    }
    if publisher is not None:
        result["publisher_cpu_pct"] = 100.0 * publisher_s / (t1 - t0)
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


def series_timeout(cfg: argparse.Namespace, n: int) -> float:
    # bounded, but long enough for a server that falls behind (3,000/s)
    broadcasts, interval = int(cfg.broadcasts), float(cfg.interval)
    return broadcasts * interval + max(15.0, broadcasts * n / 3000.0)


def burst_timeout(count: int, n: int) -> float:
    return min(90.0, max(20.0, count * n / 2500.0))


async def connect_clients(
    gens: list[LoadGen],
    shares: list[int],
    port: int,
    cfg: argparse.Namespace,
    pid: int,
) -> dict[str, Any]:
    """Connect and subscribe every load generator's share; the figures
    (with the server's CPU per connection, which a loaded machine's other
    work does not change as it changes the rate)."""
    url = f"ws://127.0.0.1:{port}/cable"
    cpu0 = sum(cpu_times(pid))
    for gen, share in zip(gens, shares, strict=True):
        await gen.send(
            cmd="connect",
            url=url,
            n=share,
            concurrency=cfg.concurrency,
            timeout_ms=cfg.connect_timeout * 1000,
        )
    connected = await each(gens, "connected", cfg.connect_timeout + 10)
    cpu_s = sum(cpu_times(pid)) - cpu0
    ok = sum(c["ok"] for c in connected)
    elapsed = max(c["elapsed_ms"] for c in connected) / 1000.0
    return {
        "connected": ok,
        "connect_failed": sum(c["failed"] for c in connected),
        "connect_errors": [c["errors"] for c in connected if c["errors"]],
        "connect_per_s": ok / elapsed if elapsed else None,
        "connect_server_cpu_us": 1e6 * cpu_s / ok if ok else None,
        "connect_ms_p50": max(c["connect_ms"]["p50"] or 0 for c in connected),
        "connect_ms_p99": max(c["connect_ms"]["p99"] or 0 for c in connected),
        # Each generator's CPU over its connects, per connect and as a share
        # of a core: at 90 % or more the generators set the rate.
        "connect_loadgen_cpu_pct": [
            100.0 * c["cpu_ms"] / c["elapsed_ms"] for c in connected
        ],
        "connect_loadgen_cpu_us": (
            1e3 * sum(c["cpu_ms"] for c in connected) / ok if ok else None
        ),
    }


async def echo_round(
    gens: list[LoadGen], cfg: argparse.Namespace, pid: int
) -> dict[str, Any]:
    """``--echo-sockets`` sockets (split over the generators) perform
    ``echo`` ``--echo-rounds`` times each, one after the other; with the
    server's CPU per echo (pings and the idle sockets' share included)."""
    timeout = 20.0
    cpu0 = sum(cpu_times(pid))
    per_gen = [cfg.echo_sockets - cfg.echo_sockets // 2, cfg.echo_sockets // 2]
    for gen, k in zip(gens, per_gen, strict=True):
        await gen.send(
            cmd="echo", sockets=k, rounds=cfg.echo_rounds, timeout_ms=timeout * 1000
        )
    parts = await each(gens, "echoed", timeout + 10)
    cpu_s = sum(cpu_times(pid)) - cpu0
    expected = sum(p["expect"] for p in parts)
    received = sum(p["received"] for p in parts)
    return {
        "server_cpu_us": 1e6 * cpu_s / received if received else None,
        "sockets": cfg.echo_sockets,
        "rounds": cfg.echo_rounds,
        "expected": expected,
        "received": received,
        **quantiles([x for p in parts for x in p["rtts"]]),
        "loadgen_cpu_pct": [100.0 * p["cpu_ms"] / p["wall_ms"] for p in parts],
    }


async def run_case(
    kind: str, n: int, cfg: argparse.Namespace, mode: str = "measure"
) -> dict[str, Any]:
    """One server process, N clients; ``mode`` is measure, profile or memory."""
    port = free_port()
    shares = [n - n // 2, n // 2]
    log_dir: Path = cfg.log_dir
    env = dict(cfg.server_env)
    http_port, http_env = http_trigger_env(kind, port)
    env.update(http_env)
    if mode == "memory":
        env["BENCH_TRACEMALLOC"] = "1"
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
        result.update(await connect_clients(gens, shares, port, cfg, proc.pid))
        ok = result["connected"]
        # One ping interval: every connection has been pinged (a connection's
        # first sends allocate some of its buffers), as when idle for long.
        await trio.sleep(cfg.settle)
        rss1 = await server_rss(control, proc.pid)
        result.update(
            {
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
        if mode == "profile":
            trigger = None
            if cfg.http_trigger:  # the profile is of the HTTP-triggered burst
                nursery = await stack.enter_async_context(trio.open_nursery())
                trigger = HttpTrigger(http_port, nursery)
            result["burst"], result["profile"] = await profiled_burst(
                gens,
                shares,
                control,
                proc.pid,
                f"b{n}",
                burst,
                burst_timeout(burst, n),
                cfg,
                trigger,
            )
            return result
        if cfg.echo_sockets:
            result["echo"] = await echo_round(gens, cfg, proc.pid)
        result["series"] = await measure(
            gens,
            shares,
            control,
            proc.pid,
            "series",
            f"s{n}",
            cfg.broadcasts,
            series_timeout(cfg, n),
            interval=cfg.interval,
        )
        rss2 = await server_rss(control, proc.pid)
        result["rss_after_series_kib"] = rss2
        result["kib_per_connection_after_series"] = (rss2 - rss0) / ok if ok else None
        result["burst"] = await measure(
            gens,
            shares,
            control,
            proc.pid,
            "burst",
            f"b{n}",
            burst,
            burst_timeout(burst, n),
        )
        result["rss_after_burst_kib"] = await server_rss(control, proc.pid)
        if cfg.http_trigger:
            # The same two phases, broadcast by an HTTP request's task.
            nursery = await stack.enter_async_context(trio.open_nursery())
            trigger = HttpTrigger(http_port, nursery)
            try:
                result["http_series"] = await measure(
                    gens,
                    shares,
                    control,
                    proc.pid,
                    "series",
                    f"hs{n}",
                    cfg.broadcasts,
                    series_timeout(cfg, n),
                    trigger=trigger,
                    interval=cfg.interval,
                )
                result["http_burst"] = await measure(
                    gens,
                    shares,
                    control,
                    proc.pid,
                    "burst",
                    f"hb{n}",
                    burst,
                    burst_timeout(burst, n),
                    trigger=trigger,
                )
            except trio.TooSlowError:
                # A server too far behind to answer: what was measured stays.
                result["http_error"] = "the server did not answer in time"
                nursery.cancel_scope.cancel()
    return result


async def run_redis_case(n: int, cfg: argparse.Namespace) -> dict[str, Any]:
    """Two cable-direct processes bridged by a redis-server: N clients on
    server B, every broadcast made in server A."""
    log_dir: Path = cfg.log_dir
    shares = [n - n // 2, n // 2]
    result: dict[str, Any] = {"server": REDIS_KIND, "connections": n, "mode": "redis"}
    result["background_cpu_pct"] = 100.0 * await wait_for_quiet(cfg.quiet_wait)
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(redis_process(log_dir))
        env = {**cfg.server_env, "TRIO_CABLE_REDIS_URL": url}
        port_a, port_b = free_port(), free_port()
        server_a = await stack.enter_async_context(
            server_process("cable-direct", port_a, log_dir, env)
        )
        server_b = await stack.enter_async_context(
            server_process("cable-direct", port_b, log_dir, env)
        )
        control_a = await stack.enter_async_context(control_connection(port_a))
        control_b = await stack.enter_async_context(control_connection(port_b))
        gens = [
            await stack.enter_async_context(loadgen_process(log_dir, i))
            for i in range(2)
        ]
        result.update(await connect_clients(gens, shares, port_b, cfg, server_b.pid))
        publisher = (control_a, server_a.pid)
        # One broadcast through the bridge first: B's Redis subscription to
        # the stream is live once it arrives.
        warm = await measure(
            gens,
            shares,
            control_b,
            server_b.pid,
            "series",
            f"rw{n}",
            1,
            10.0,
            publisher=publisher,
            interval=0.0,
        )
        result["warm_up_delivered_pct"] = warm["delivered_pct"]
        result["series"] = await measure(
            gens,
            shares,
            control_b,
            server_b.pid,
            "series",
            f"rs{n}",
            cfg.broadcasts,
            series_timeout(cfg, n),
            publisher=publisher,
            interval=cfg.interval,
        )
        burst = burst_count(n, cfg.burst_deliveries)
        result["burst"] = await measure(
            gens,
            shares,
            control_b,
            server_b.pid,
            "burst",
            f"rb{n}",
            burst,
            burst_timeout(burst, n),
            publisher=publisher,
        )
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
    trigger: HttpTrigger | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A burst with py-spy sampling the server; returns (burst, profile).
    With ``trigger``, the HTTP-triggered burst."""
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
            gens, shares, control, pid, "burst", phase, count, timeout, trigger=trigger
        )
    finally:
        with trio.CancelScope(shield=True):
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            with trio.move_on_after(20):
                await spy.wait()
            await stop_process(spy)
    return burst, summarise_profile(out.read_text(), burst)
