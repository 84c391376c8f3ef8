"""The reference floors: the transports with no trio_cable in between.

Each connection gets a writer task fed by a bounded memory channel (the
least a trio server needs so that one slow socket does not stall a
broadcast); a broadcast builds its frame once and hands it to every
subscribed connection. Just enough of the Action Cable protocol is spoken
(welcome, confirm_subscription, the control actions of bench_app.py) for
the same load generator and driver to work.

* trio-websocket: ``python bare_app.py --port PORT`` (``send_message``)
* Hypercorn: ``hypercorn --worker-class trio bare_app:app`` (``websocket.send``)

``POST /_broadcast`` (bench_common's HTTP trigger; on Hypercorn's port, or
``BENCH_HTTP_PORT``) sends each frame by awaiting every socket's own send
in the request's task: what the transport itself costs per delivery.

``BENCH_TUNE_GC=1`` applies ``trio_cable.tune_gc()`` at import, the
setting the cable servers get from ``tune_gc=True``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import trio
from bench_common import (
    BENCH_CHANNEL,
    HTTP_PORT,
    asgi_http_trigger,
    bench_payload,
    gc_action,
    memory_action,
    padding,
    raise_nofile_limit,
    serve_http_trigger,
)
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from trio_cable import tune_gc

raise_nofile_limit()
if os.environ.get("BENCH_TUNE_GC") == "1":
    tune_gc()

PROTOCOL = "actioncable-v1-json"
OUTBOX = 1024  # frames queued per connection, as trio_cable's default

SendText = Callable[[str], Awaitable[None]]
ReceiveText = Callable[[], Awaitable[str]]


class Closed(Exception):
    pass


def _frame(identifier: str, data: Any) -> str:
    return json.dumps(
        {"identifier": identifier, "message": data}, separators=(",", ":")
    )


class BareServer:
    """Subscribed connections' outboxes, and the fan-out loop."""

    def __init__(self) -> None:
        # subscribed connections: outbox -> the socket's own send
        self.outboxes: dict[trio.MemorySendChannel[str], SendText] = {}
        self.prefix = '{{"identifier":{},"message":'.format(
            json.dumps(json.dumps({"channel": BENCH_CHANNEL}, separators=(",", ":")))
        )
        self.dropped = 0

    def _frame(self, data: Any) -> str:
        return self.prefix + json.dumps(data, separators=(",", ":")) + "}"

    def fan_out(self, data: Any) -> None:
        frame = self._frame(data)
        for outbox in tuple(self.outboxes):
            try:
                outbox.send_nowait(frame)
            except trio.WouldBlock:
                self.dropped += 1

    async def send_all(self, data: Any) -> None:
        """The HTTP trigger's fan-out: ``await`` each socket's own send in
        the request's task, one after the other (no outbox, no writer)."""
        frame = self._frame(data)
        for send_text in tuple(self.outboxes.values()):
            with contextlib.suppress(Closed):
                await send_text(frame)

    async def http_action(self, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /_broadcast``: the series or burst, sent by this task."""
        phase = data.get("phase")
        pad = padding(data.get("size", 100))
        if data["action"] == "series":
            start = trio.current_time()
            for seq in range(min(int(data["count"]), 1000)):
                await trio.sleep_until(start + seq * float(data["interval"]))
                await self.send_all(bench_payload(phase, seq, pad))
            return {"done": "series", "phase": phase}
        started = time.perf_counter()
        for seq in range(min(int(data["count"]), 100_000)):
            await self.send_all(bench_payload(phase, seq, pad))
        enqueue_ms = (time.perf_counter() - started) * 1000.0
        return {"done": "burst", "phase": phase, "enqueue_ms": enqueue_ms}

    async def connection(self, send_text: SendText, receive_text: ReceiveText) -> None:
        outbox, inbox = trio.open_memory_channel[str](OUTBOX)
        await send_text('{"type":"welcome"}')
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, inbox, send_text)
                try:
                    while True:
                        text = await receive_text()
                        self._command(text, outbox, send_text, nursery)
                except Closed:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            self.outboxes.pop(outbox, None)

    async def _writer(
        self, inbox: trio.MemoryReceiveChannel[str], send_text: SendText
    ) -> None:
        try:
            async for frame in inbox:
                await send_text(frame)
        except Closed:
            pass

    def _command(
        self,
        text: str,
        outbox: trio.MemorySendChannel[str],
        send_text: SendText,
        nursery: trio.Nursery,
    ) -> None:
        command = json.loads(text)
        identifier = command["identifier"]
        if command["command"] == "subscribe":
            if json.loads(identifier)["channel"] == BENCH_CHANNEL:
                self.outboxes[outbox] = send_text
            outbox.send_nowait(
                json.dumps(
                    {"identifier": identifier, "type": "confirm_subscription"},
                    separators=(",", ":"),
                )
            )
        elif command["command"] == "message":
            data = json.loads(command["data"])
            reply = partial(self._reply, outbox, identifier)
            nursery.start_soon(self._action, data, reply)

    @staticmethod
    def _reply(outbox: trio.MemorySendChannel[str], identifier: str, data: Any) -> None:
        outbox.send_nowait(_frame(identifier, data))

    async def _action(self, data: dict[str, Any], reply: Callable[[Any], None]) -> None:
        action, phase = data["action"], data.get("phase")
        pad = padding(data.get("size", 100))
        if action == "echo":
            reply(data)
        elif action == "series":
            start = trio.current_time()
            for seq in range(min(int(data["count"]), 1000)):
                await trio.sleep_until(start + seq * float(data["interval"]))
                self.fan_out(bench_payload(phase, seq, pad))
            reply({"done": "series", "phase": phase})
        elif action == "burst":
            started = time.perf_counter()
            for seq in range(min(int(data["count"]), 100_000)):
                self.fan_out(bench_payload(phase, seq, pad))
                await trio.lowlevel.checkpoint()
            enqueue_ms = (time.perf_counter() - started) * 1000.0
            reply(
                {
                    "done": "burst",
                    "phase": phase,
                    "enqueue_ms": enqueue_ms,
                    "dropped": self.dropped,
                }
            )
        elif action == "gc":
            reply(gc_action(data))
        elif action == "memory":
            reply({"done": "memory", **memory_action(data)})


server = BareServer()

# -- Hypercorn (ASGI) ------------------------------------------------------------

Scope = MutableMapping[str, Any]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "http":
        await asgi_http_trigger(scope, receive, send, server.http_action)
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept", "subprotocol": PROTOCOL})

    async def send_text(frame: str) -> None:
        try:
            await send({"type": "websocket.send", "text": frame})
        except OSError:
            raise Closed from None

    async def receive_text() -> str:
        message = await receive()
        if message["type"] != "websocket.receive":
            raise Closed
        return str(message.get("text") or "")

    await server.connection(send_text, receive_text)


# -- trio-websocket ----------------------------------------------------------------


async def handler(request: WebSocketRequest) -> None:
    ws = await request.accept(subprotocol=PROTOCOL)

    async def send_text(frame: str) -> None:
        try:
            await ws.send_message(frame)
        except ConnectionClosed:
            raise Closed from None

    async def receive_text() -> str:
        try:
            return str(await ws.get_message())
        except ConnectionClosed:
            raise Closed from None

    await server.connection(send_text, receive_text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(serve_websocket, handler, args.host, args.port, None)
            )
            if HTTP_PORT:
                await nursery.start(serve_http_trigger, HTTP_PORT, server.http_action)
            print("listening", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve)


if __name__ == "__main__":
    main()
