"""The demo's "who is here" across two worker processes: two Hypercorn
processes of ``trio_cable.demo:app`` on one real redis-server, ana on
one and bo on the other; each worker's room page lists both names, and
each page's socket gets the list as a Turbo Stream."""

from __future__ import annotations

import re
import socket
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from tests.helpers.redis_server import RedisServer
from tests.helpers.waiting import LOSS_BOUND
from tests.helpers.wsclient import RawClient, command
from tests.interop.servers import ServerProcess
from trio_cable.testing import identifier_for

ROOM = identifier_for("ChatChannel", room="trio")


class DemoWorker(ServerProcess):
    """``hypercorn --worker-class trio trio_cable.demo:app``, as users run it."""

    def __init__(self, log_dir: Path, redis_url: str) -> None:
        super().__init__("hypercorn", log_dir, env={"TRIO_CABLE_REDIS_URL": redis_url})

    def command(self) -> list[str]:
        return [
            *super().command()[:-3],
            "trio_cable.demo:app",
            "--bind",
            f"127.0.0.1:{self.port}",
        ]

    def get_stats_sync(self) -> dict[str, Any]:
        # The demo has no /stats: ready once it serves its icon (its
        # lifespan, which starts the cable, ran before it serves at all).
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"GET /favicon.svg HTTP/1.1\r\nHost: x\r\n\r\n")
            head = sock.recv(64)
        return {"running": head.startswith(b"HTTP/1.1 200")}


async def join(stack: AsyncExitStack, port: int, name: str) -> RawClient:
    client = await RawClient.open(port)
    stack.push_async_callback(client.aclose)
    head = await client.handshake(port, headers=f"Cookie: demo_name={name}\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert await client.receive() == {"type": "welcome"}
    await client.send_text(command("subscribe", ROOM))
    return client


async def members_shown(client: RawClient, wanted: str) -> None:
    """Read Turbo Streams until the member list shows ``wanted``."""
    with trio.fail_after(LOSS_BOUND):
        while (frame := await client.receive()) is not None:
            message = frame.get("message")
            if isinstance(message, str) and 'target="members"' in message:
                shown = re.search(r"<template>(.*)</template>", message)
                if shown is not None and shown.group(1) == wanted:
                    return
    raise AssertionError("closed")


async def get_page(port: int) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET /rooms/trio HTTP/1.1\r\nHost: x\r\nCookie: demo_name=eve\r\n"
            b"Connection: close\r\n\r\n"
        )
        raw = bytearray()
        while chunk := await stream.receive_some():
            raw += chunk
    return raw.decode()


async def test_who_is_here_across_two_demo_workers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with (
        DemoWorker(tmp_path, redis_server.url) as one,
        DemoWorker(tmp_path, redis_server.url) as two,
    ):
        async with AsyncExitStack() as stack:
            ana = await join(stack, one.port, "ana")
            await members_shown(ana, "ana")
            bo = await join(stack, two.port, "bo")
            # Announced once (by bo's worker), seen on both workers' sockets.
            await members_shown(bo, "ana, bo")
            await members_shown(ana, "ana, bo")
            for port in (one.port, two.port):
                page = await get_page(port)
                assert '<span id="members">ana, bo</span>' in page, page[-2000:]
            await bo.send_text(command("unsubscribe", ROOM))
            await members_shown(ana, "ana")
