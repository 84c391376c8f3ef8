"""Presence's cost over a subscription's whole life, in one process,
counted in instructions (presence_cost.py counts the connects over real
sockets; this adds the drop, the grace and the shutdown).

The workload: N clients of ``cable_test_client`` (the in-memory
transport) each connect and subscribe to a channel that streams from
``bench`` and, with presence, joins as a member of its own (info
``{"name": "member"}``, ``presence_events = False``, bench_app.py's
``BenchChannel``); then every client drops (each member's grace starts)
and the cable stops. It runs under valgrind's callgrind, plain and with
presence, each with ``--small`` and ``--large`` N, with ``PYTHONHASHSEED=0``;
the difference between the two counts over the extra subscriptions is
the cost of one, start-up and shutdown cancelled out. Identical runs
agree to about 0.2 %, and the machine's load does not change them.

Run: ``python benchmarks/presence_life.py [--small 200] [--large 1200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trio_cable import Cable, Channel  # noqa: E402
from trio_cable.testing import cable_test_client  # noqa: E402


async def workload(presence: bool, n: int) -> None:
    cable = Cable(ping_interval=3600)

    @cable.channel
    class BenchChannel(Channel):
        presence_events = False

        async def subscribed(self) -> None:
            self.stream_from("bench", presence=presence)
            if presence:
                self.presence.join(f"m{id(self)}", {"name": "member"})

    async with cable.running(), AsyncExitStack() as clients:
        for _ in range(n):
            client = await clients.enter_async_context(cable_test_client(cable))
            await client.subscribe("BenchChannel")


async def count(presence: bool, n: int, out: Path) -> int:
    """Instructions of one run of the workload under callgrind."""
    mode = "1" if presence else "0"
    await trio.run_process(
        [
            *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
            *(sys.executable, __file__, "--child", mode, str(n)),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_stderr=True,
    )
    for line in out.read_text().splitlines():  # noqa: ASYNC240 (written, closed)
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


async def bench(small: int, large: int) -> dict[str, float]:
    counts: dict[tuple[bool, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="trio-cable-presence-life-") as tmp:

        async def one(presence: bool, n: int) -> None:
            out = Path(tmp) / f"callgrind-{int(presence)}-{n}.out"
            counts[(presence, n)] = await count(presence, n, out)

        async with trio.open_nursery() as nursery:
            for presence in (False, True):
                for n in (small, large):
                    nursery.start_soon(one, presence, n)
    each = {
        name: (counts[(presence, large)] - counts[(presence, small)]) / (large - small)
        for name, presence in (("plain", False), ("presence", True))
    }
    extra = each["presence"] - each["plain"]
    return {
        "plain_instructions_per_subscription": round(each["plain"]),
        "presence_instructions_per_subscription": round(each["presence"]),
        "presence_extra": round(extra),
        "presence_extra_pct": round(100.0 * extra / each["plain"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1200)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        trio.run(workload, args.child[0] == "1", int(args.child[1]))
        return
    print(json.dumps(trio.run(bench, args.small, args.large), indent=2))


if __name__ == "__main__":
    main()
