"""Presence: memory per member, and how soon 5,000 members joined on one
worker are listed on another through Redis.

* memory: ``--members`` members joined on one stream of one cable's
  tracker, each held by a subscription's presence side (the objects a
  real subscription adds; the connection's own cost is not counted),
  measured with tracemalloc;
* visibility: two cables (two workers, here in one process) on a
  redis-server of our own; the members join on the first, and the clock
  stops when the second's ``cable.presence(stream)`` lists them all.

Run: ``python benchmarks/presence_bench.py [--members 5000]``.
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

from trio_cable import Cable, RedisCable  # noqa: E402
from trio_cable._presence import SubscriptionPresence  # noqa: E402


class Record:
    """What a subscription's presence side needs of its protocol record."""

    identifier = '{"channel":"Room"}'

    def presence(self, event: str) -> None:
        pass


def join_all(cable: Cable, members: int) -> list[SubscriptionPresence]:
    sides = []
    for n in range(members):
        side = SubscriptionPresence(
            cable,
            Record(),  # type: ignore[arg-type]  # a stand-in record
            "room",
            events=False,  # (with events, the cable's hub holds each side too)
        )
        side.join(f"user-{n}", json.dumps({"name": f"User {n}"}))
        sides.append(side)
    return sides


def memory(members: int) -> dict[str, Any]:
    cable = Cable()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sides = join_all(cable, members)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(cable.presence_tracker.local_members("room")) == members
    del sides
    return {"members": members, "bytes_per_member": round((after - before) / members)}


async def visibility(url: str, members: int) -> dict[str, Any]:
    a, b = RedisCable(url), RedisCable(url)
    async with a.running(), b.running():
        await a.presence("room")  # presence in use: the workers connect
        await b.presence("room")
        start = trio.current_time()
        join_all(a, members)
        polls = 0
        while len(await b.presence("room")) < members:
            polls += 1
            await trio.sleep(0.01)
        took = trio.current_time() - start
    return {"members": members, "visible_on_second_worker_s": round(took, 3)}


async def bench(members: int) -> dict[str, Any]:
    result = memory(members)
    with tempfile.TemporaryDirectory(prefix="trio-cable-presence-") as data:
        async with redis_process(Path(data)) as url:
            result |= await visibility(url, members)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(trio.run(bench, args.members), indent=2))


if __name__ == "__main__":
    main()
