"""The trio_cable server under benchmark.

``BenchChannel`` streams from ``bench`` and answers its ``echo`` action
with the data it was sent; ``BenchControl`` is run.py's remote control: its
actions broadcast to ``bench`` from inside the server (each payload carries
the server's ``time.time()`` in ms) and answer with a ``done`` transmit
when finished.

Served three ways, each in its own process:

* direct: ``python bench_app.py --port PORT`` (``serve_cable``, the default
  transport)
* trio-websocket: ``python bench_app.py --port PORT --transport trio-websocket``
* Hypercorn: ``hypercorn --worker-class trio bench_app:app`` (``CableApp``)

``POST /_broadcast`` runs the series or the burst in an HTTP request's
task instead (bench_common's HTTP trigger): on Hypercorn's own port, and
for the other two on ``BENCH_HTTP_PORT``.

``BENCH_TUNE_GC=1`` applies ``trio_cable.tune_gc`` (``tune_gc=True``;
``0``: ``tune_gc=False``; unset: the servers' default, None),
``TRIO_CABLE_REDIS_URL`` makes the cable cross-process (run.py's Redis row),
and ``BENCH_HISTORY=1`` has the ``bench`` stream keep history (run.py
``--history``; in Redis when the cable has Redis). ``BENCH_PRESENCE=1``
(run.py ``--presence``) has every subscriber join the stream's presence
as a member of its own, with a small info (presence's cost on connects
and memory). ``BENCH_PING_INTERVAL`` sets the cable's ping interval
(presence_cost.py turns pings off, so that only connects are counted).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from functools import partial
from typing import Any

import trio
from bench_common import (
    HTTP_PORT,
    STREAM,
    asgi_http_trigger,
    bench_payload,
    gc_action,
    memory_action,
    padding,
    profile_action,
    raise_nofile_limit,
    serve_http_trigger,
    steps_action,
)

from trio_cable import Cable, Channel, serve_cable
from trio_cable.asgi import CableApp, Receive, Scope, Send

raise_nofile_limit()

# BENCH_TUNE_GC unset: the servers' default (None: the first threshold
# raised while serving, if the collector has Python's defaults);
# BENCH_TUNE_GC=0: never tuned (as before that default); 1: tune_gc=True.
TUNE_GC = {"1": True, "0": False}.get(os.environ.get("BENCH_TUNE_GC", ""))
HISTORY = [STREAM] if os.environ.get("BENCH_HISTORY") == "1" else []
PRESENCE = os.environ.get("BENCH_PRESENCE") == "1"

PING_INTERVAL = float(os.environ.get("BENCH_PING_INTERVAL", "3"))

# The benchmark holds up to 10,000 subscribers plus the driver's socket.
cable = Cable(max_connections=50_000, history=HISTORY, ping_interval=PING_INTERVAL)


@cable.channel
class BenchChannel(Channel):
    presence_events = False  # each join would go to every member (N x N)

    async def subscribed(self) -> None:
        self.stream_from(STREAM, presence=PRESENCE)
        if PRESENCE:
            self.presence.join(f"m{id(self)}", {"name": "member"})

    async def echo(self, data: dict[str, Any]) -> None:
        """The round trip: the client's data straight back."""
        self.transmit(data)


async def series(data: dict[str, Any]) -> dict[str, Any]:
    """``count`` broadcasts, one every ``interval`` seconds."""
    pad = padding(data.get("size", 100))
    count = min(int(data["count"]), 1000)
    start = trio.current_time()
    for seq in range(count):
        await trio.sleep_until(start + seq * float(data["interval"]))
        await cable.broadcast(STREAM, bench_payload(data["phase"], seq, pad))
    return {"done": "series", "phase": data["phase"]}


async def burst(data: dict[str, Any]) -> dict[str, Any]:
    """``count`` broadcasts as fast as the hub takes them."""
    pad = padding(data.get("size", 100))
    count = min(int(data["count"]), 100_000)
    started = time.perf_counter()
    for seq in range(count):
        await cable.broadcast(STREAM, bench_payload(data["phase"], seq, pad))
    enqueue_ms = (time.perf_counter() - started) * 1000.0
    return {"done": "burst", "phase": data["phase"], "enqueue_ms": enqueue_ms}


async def http_action(data: dict[str, Any]) -> dict[str, Any]:
    """``POST /_broadcast``: the series or burst in the request's task."""
    return await (burst if data["action"] == "burst" else series)(data)


@cable.channel
class BenchControl(Channel):
    async def series(self, data: dict[str, Any]) -> None:
        self.transmit(await series(data))

    async def burst(self, data: dict[str, Any]) -> None:
        self.transmit(await burst(data))

    async def gc(self, data: dict[str, Any]) -> None:
        self.transmit(gc_action(data))

    async def memory(self, data: dict[str, Any]) -> None:
        self.transmit({"done": "memory", **memory_action(data)})

    async def profile(self, data: dict[str, Any]) -> None:
        self.transmit({"done": "profile", **profile_action(data)})

    async def steps(self, data: dict[str, Any]) -> None:
        self.transmit({"done": "steps", **steps_action(data)})


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await asgi_http_trigger(scope, receive, send, http_action)


# BENCH_TUNE_GC as above; BENCH_SEND_POOL=0: a writer task per socket
# (before the pool).
app = CableApp(
    cable,
    http_app,
    tune_gc=TUNE_GC,
    send_pool=os.environ.get("BENCH_SEND_POOL") != "0",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--transport", choices=("direct", "trio-websocket"), default="direct"
    )
    args = parser.parse_args()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve_cable,
                    cable,
                    args.host,
                    args.port,
                    transport=args.transport,
                    tune_gc=TUNE_GC,
                )
            )
            if HTTP_PORT:
                await nursery.start(serve_http_trigger, HTTP_PORT, http_action)
            print(f"listening ({args.transport})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)


if __name__ == "__main__":
    main()
