"""Action replies: what a call costs next to the echo pattern it replaces.

A server process (this script with ``--serve``: ``serve_cable`` on the
direct transport, rate limit lifted) and the Python client here, one
subscription, one request in flight at a time:

* ``call``: ``await sub.call("echo", data)``, the action returns the data;
* ``perform + transmit``: ``await sub.perform("echo_back", data)`` and wait
  for the action's ``transmit`` with ``sub.receive()``: what clients had
  to do without replies.

Run: ``python benchmarks/calls_bench.py [--count 2000]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trio_cable import Cable, Channel, serve_cable  # noqa: E402
from trio_cable.client import open_cable_client  # noqa: E402

cable = Cable(commands_per_second=1e9, command_burst=10**9)


@cable.channel
class EchoChannel(Channel):
    async def echo(self, data: dict[str, Any]) -> Any:
        return data["n"]

    async def echo_back(self, data: dict[str, Any]) -> None:
        self.transmit(data["n"])


async def serve(port: int) -> None:
    await serve_cable(cable, "127.0.0.1", port)


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{statistics.median(ms):.3f} / {p99:.3f}"


async def measure(url: str, count: int) -> dict[str, str]:
    results = {}
    async with (
        open_cable_client(url) as client,
        client.subscribe("EchoChannel") as sub,
    ):
        for _ in range(200):  # warm up both paths
            await sub.call("echo", {"n": 0})
            await sub.perform("echo_back", {"n": 0})
            await sub.receive()
        samples = []
        for n in range(count):
            start = time.perf_counter()
            assert await sub.call("echo", {"n": n}) == n
            samples.append(time.perf_counter() - start)
        results["call"] = percentiles(samples)
        samples = []
        for n in range(count):
            start = time.perf_counter()
            await sub.perform("echo_back", {"n": n})
            assert await sub.receive() == n
            samples.append(time.perf_counter() - start)
        results["perform + transmit"] = percentiles(samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--serve", type=int, metavar="PORT")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve)
        return
    from tests.helpers.ports import free_port  # the one free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        url = f"ws://127.0.0.1:{port}/cable"

        async def run() -> dict[str, str]:
            with trio.fail_after(20):
                while True:  # until the server listens
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        await trio.sleep(0.05)
                        continue
                    await stream.aclose()
                    break
            return await measure(url, args.count)

        results = trio.run(run)
    finally:
        server.terminate()
        server.wait()
    print(f"{args.count} round trips each, one in flight, p50 / p99 ms")
    for name, value in results.items():
        print(f"  {name:<20} {value}")


if __name__ == "__main__":
    main()
