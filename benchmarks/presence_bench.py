"""Presence: memory per member, and how soon 5,000 members joined on one
worker are listed on another through Redis.

* memory: ``--members`` members joined on one stream of one cable's
  tracker, each held by a subscription's presence side (the objects a
  real subscription adds; the connection's own cost is not counted),
  measured with tracemalloc;
* visibility: two workers on a redis-server of our own; the members join
  on the first (a cable in this process), and the clock stops when the
  second's ``cable.presence(stream)`` lists them all. The second is a
  worker *process* (this script with ``--second-worker``: a cable of its
  own on the same Redis, asking every 10 ms, reporting the wall-clock
  time it first listed them all), as in a deployment; and, for
  comparison, a second cable in this same process (one trio loop for
  both, taking turns).

Run: ``python benchmarks/presence_bench.py [--members 5000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import redis_process, stop_process  # noqa: E402

from trio_cable import Cable, RedisCable  # noqa: E402
from trio_cable._presence import SubscriptionPresence  # noqa: E402


class Record:
    """What a subscription's presence side needs of its protocol record."""

    identifier = '{"channel":"Room"}'

    def presence(self, event: str) -> None:
        pass


def join_all(
    cable: Cable, members: int, stream: str = "room"
) -> list[SubscriptionPresence]:
    sides = []
    for n in range(members):
        side = SubscriptionPresence(
            cable,
            Record(),  # type: ignore[arg-type]  # a stand-in record
            stream,
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


async def until_listed(cable: RedisCable, stream: str, members: int) -> None:
    while len(await cable.presence(stream)) < members:
        await trio.sleep(0.01)


async def visibility(url: str, members: int) -> dict[str, Any]:
    """Two cables in this process (the second polled in the same loop)."""
    a, b = RedisCable(url), RedisCable(url)
    async with a.running(), b.running():
        await a.presence("room")  # presence in use: the workers connect
        await b.presence("room")
        start = trio.current_time()
        join_all(a, members)
        await until_listed(b, "room", members)
        took = trio.current_time() - start
    return {"visible_on_second_cable_in_process_s": round(took, 3)}


async def second_worker(url: str, stream: str, members: int) -> None:
    """``--second-worker``: say ``ready`` once connected, then the time
    (``time.time()``) it first lists ``members`` members of ``stream``."""
    cable = RedisCable(url)
    async with cable.running():
        await cable.presence(stream)
        print("ready", flush=True)
        await until_listed(cable, stream, members)
        print(json.dumps({"listed_at": time.time()}), flush=True)


async def visibility_across_processes(url: str, members: int) -> dict[str, Any]:
    """The second worker in a process of its own (the realistic case)."""
    stream = "room-p"
    command = [sys.executable, __file__, "--second-worker", url, stream]
    proc = await trio.lowlevel.open_process(
        [*command, "--members", str(members)], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        lines = proc_lines(proc.stdout)
        with trio.fail_after(60):
            assert await anext(lines) == "ready"
        a = RedisCable(url)
        async with a.running():
            await a.presence(stream)  # presence in use: the worker connects
            start = time.time()
            join_all(a, members, stream)
            with trio.fail_after(120):
                listed = json.loads(await anext(lines))["listed_at"]
        with trio.fail_after(30):
            await proc.wait()
    finally:
        await stop_process(proc)
    return {"visible_on_second_worker_process_s": round(listed - start, 3)}


async def proc_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffer = b""
    while chunk := await stream.receive_some():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


async def bench(members: int) -> dict[str, Any]:
    result = memory(members)
    with tempfile.TemporaryDirectory(prefix="trio-cable-presence-") as data:
        async with redis_process(Path(data)) as url:
            result |= await visibility_across_processes(url, members)
            result |= await visibility(url, members)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument(
        "--second-worker",
        nargs=2,
        metavar=("URL", "STREAM"),
        help="(internal) be the second worker process",
    )
    args = parser.parse_args()
    if args.second_worker:
        trio.run(second_worker, *args.second_worker, args.members)
        return
    print(json.dumps(trio.run(bench, args.members), indent=2))


if __name__ == "__main__":
    main()
