"""Memory and CPU per subscribed connection, quickly: no Node, one server kind.

Starts one server (``--server``, a run.py kind; ``cable-direct`` by
default) in its own process, opens N raw WebSocket clients from this
process (handshake, ``welcome``, subscribe to BenchChannel, its
confirmation; 100 in flight), waits one ping interval, collects the
server's garbage and reads its RSS: (RSS after - RSS before) / N, as
run.py's memory figure. The server's CPU time (user + system, from
/proc) over the connects, / N, is the CPU per connect + subscribe: what
another process's load on the machine hardly moves, unlike a rate.
``--repeat`` starts a fresh server each time (the memory figure moves by
a few tenths of a KiB between runs); ``--trace`` also prints what
tracemalloc saw allocated per connection, by file and line;
``--profile FILE`` writes a cProfile of the server over the connects
(``python -m pstats FILE``); ``--callgrind`` runs the server under
valgrind's callgrind and counts the instructions it ran over the connects
(no pings among them): a figure other processes' load does not move at
all (use a few hundred connections: each costs some 50 times longer);
``--steps`` counts the scheduler's work per connect (task steps, tasks
spawned, epoll waits, ``wait_readable``/``wait_writable`` calls).

    python benchmarks/memory_probe.py --connections 2000 --repeat 3
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import BENCH_CHANNEL, raise_nofile_limit  # noqa: E402
from cases import server_rss  # noqa: E402
from harness import (  # noqa: E402
    control_connection,
    cpu_times,
    free_port,
    server_process,
)

SUBSCRIBE = json.dumps(
    {"command": "subscribe", "identifier": json.dumps({"channel": BENCH_CHANNEL})}
).encode()


def _masked(payload: bytes) -> bytes:
    """A client text frame (masked, as RFC 6455 requires); payload < 126 B."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def _read_until(stream: trio.SocketStream, marker: bytes) -> None:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk


async def _client(port: int, streams: list[trio.SocketStream]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    await stream.send_all(
        b"GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
    )
    await _read_until(stream, b"welcome")
    await stream.send_all(_masked(SUBSCRIBE))
    await _read_until(stream, b"confirm_subscription")
    streams.append(stream)


def _echo_frame(n: int) -> bytes:
    data = json.dumps({"action": "echo", "n": n})
    return _masked(
        json.dumps(
            {
                "command": "message",
                "identifier": json.dumps({"channel": BENCH_CHANNEL}),
                "data": data,
            }
        ).encode()
    )


async def _echoes(stream: trio.SocketStream, k: int) -> None:
    """``k`` echo actions, each sent once the one before came back."""
    for n in range(k):
        await stream.send_all(_echo_frame(n))
        await _read_until(stream, b'"n":%d}' % n)


async def probe(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    kind, n, trace, profile = args.server, args.connections, args.trace, args.profile
    port = free_port()
    env = {"BENCH_TRACEMALLOC": "1"} if trace else {}
    wrapper: list[str] = []
    if args.callgrind:
        # Instructions are counted only over the connects (callgrind_control
        # switches them on), with no pings among them.
        env["BENCH_PING_INTERVAL"] = "3600"
        wrapper = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={log_dir}/callgrind.out.%p",
        ]
    async with (
        server_process(
            kind, port, log_dir, env, wrapper=wrapper, ready_timeout=300
        ) as proc,
        control_connection(port) as control,
    ):
        await trio.sleep(0.5)
        if trace:
            await control.perform("memory", op="mark")
            await control.done("memory", 30)
        rss0 = await server_rss(control, proc.pid)
        streams: list[trio.SocketStream] = []
        limit = trio.CapacityLimiter(100)

        async def one() -> None:
            async with limit:
                await _client(port, streams)

        if args.echoes:  # the connects first, unmeasured
            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(one)
        if profile is not None:
            await control.perform("profile", op="start")
            await control.done("profile", 30)
        if args.steps:
            await control.perform("steps", op="start")
            await control.done("steps", 30)
        if args.callgrind:
            await _callgrind_control("--instr=on", proc.pid)
        if not args.callgrind:  # GC pauses from here (the stats reset)
            await control.perform("gc")
            await control.done("gc", 60)
        cpu0 = cpu_times(proc.pid)
        with trio.fail_after(900):
            async with trio.open_nursery() as nursery:
                if args.echoes:
                    # Every connection at once, each echo after the last.
                    for stream in streams:
                        nursery.start_soon(_echoes, stream, args.echoes)
                    n *= args.echoes  # figures per echo
                else:
                    for _ in range(n):
                        nursery.start_soon(one)
        cpu1 = cpu_times(proc.pid)
        user_s, system_s = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        result: dict[str, Any] = {
            "connect_server_cpu_us": 1e6 * (user_s + system_s) / n,
            "connect_server_system_us": 1e6 * system_s / n,
        }
        if not args.callgrind:
            await control.perform("gc")
            stats = (await control.done("gc", 60))["stats"]
            result["gc_us"] = 1e3 * sum(g["total_ms"] for g in stats.values()) / n
            result["gc_counts"] = [stats[g]["count"] for g in ("0", "1", "2")]
        if args.steps:
            await control.perform("steps", op="stop")
            counts = (await control.done("steps", 30))["counts"]
            result["steps"] = {name: count / n for name, count in counts.items()}
        if args.callgrind:
            await _callgrind_control("--dump", proc.pid)
            result["instructions_per_connect"] = _dumped_instructions(log_dir) / n
            return result
        if args.echoes:
            if profile is not None:
                await control.perform("profile", op="stop", path=str(profile.resolve()))
                await control.done("profile", 30)
            return result
        if profile is not None:
            await control.perform("profile", op="stop", path=str(profile.resolve()))
            await control.done("profile", 30)
        idle0 = sum(cpu_times(proc.pid))
        await trio.sleep(3.5)  # every connection pinged once, as in run.py
        # What the idle connections cost meanwhile (their pings, mostly).
        result["idle_cpu_us"] = 1e6 * (sum(cpu_times(proc.pid)) - idle0) / n
        rss1 = await server_rss(control, proc.pid)
        result["kib_per_connection"] = (rss1 - rss0) / n
        if trace:
            path = log_dir / "memory.json"
            await control.perform("memory", op="report", connections=n, path=str(path))
            await control.done("memory", 900)
            result["trace"] = json.loads(path.read_text())
        for stream in streams:
            await stream.aclose()
        return result


async def _callgrind_control(option: str, pid: int) -> None:
    await trio.run_process(["callgrind_control", option, str(pid)], capture_stdout=True)


def _dumped_instructions(log_dir: Path) -> int:
    """The instructions in callgrind's one dump (its ``totals:`` line)."""
    (dump,) = log_dir.glob("callgrind.out.*.1")
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


async def main_async(args: argparse.Namespace) -> None:
    for _ in range(args.repeat):
        log_dir = Path(tempfile.mkdtemp(prefix="trio-cable-probe-"))
        result = await probe(args, log_dir)
        what = "echo" if args.echoes else "connect"
        if "steps" in result:
            print(
                f"  per {what}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in result["steps"].items()),
                flush=True,
            )
        if args.callgrind:
            print(
                f"{args.server}: "
                f"{result['instructions_per_connect']:,.0f} instructions per {what}",
                flush=True,
            )
            continue
        if args.echoes:
            print(
                f"{args.server}: {result['connect_server_cpu_us']:.0f} µs server "
                f"CPU per echo ({result['connect_server_system_us']:.0f} µs of it "
                f"in the kernel, {result['gc_us']:.0f} µs in collections "
                f"{result['gc_counts']})",
                flush=True,
            )
            continue
        print(
            f"{args.server}: {result['kib_per_connection']:.2f} KiB/conn, "
            f"{result['connect_server_cpu_us']:.0f} µs server CPU per connect "
            f"({result['connect_server_system_us']:.0f} µs of it in the kernel, "
            f"{result['gc_us']:.0f} µs in collections {result['gc_counts']}); "
            f"idle 3.5 s: {result['idle_cpu_us']:.1f} µs per connection",
            flush=True,
        )
        trace = result.get("trace")
        if trace:
            print(f"  traced {trace['bytes_per_connection']:,.0f} B/conn")
            for line, size in list(trace["top_lines"].items())[: args.top]:
                print(f"  {size:8,.0f}  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default="cable-direct")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--steps", action="store_true")
    parser.add_argument(
        "--echoes",
        type=int,
        default=0,
        help="measure K echo actions per connection (all at once, each "
        "after the last came back) instead of the connects",
    )
    raise_nofile_limit()
    trio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
