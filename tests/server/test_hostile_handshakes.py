"""Hostile handshakes: sockets that never finish their handshake, more of
them than the server should hold, and a process out of file descriptors
(issue 15, point 7).

A handshake under way counts against ``max_connections`` (so a client
that arrives while the slots are taken by trickling sockets is told 503,
not left hanging), at most ``max_handshakes`` are under way at once
(beyond it a new socket is closed at once), and each is dropped after
the handshake timeout (``connect_timeout``). These hold for both
transports of ``serve_cable``: the direct one reads handshakes itself,
and trio-websocket reads each when the serving path asks for it.
Hypercorn reads them before the cable sees them: its keep-alive timer
(``keep_alive_timeout``, 5 s by default) drops a socket whose request
head is unfinished, and the cable serves everyone else meanwhile (see
docs/security.md).
Running out of file descriptors: both transports accept through loops of
ours that back off and log once (trio's ``serve_listeners``, which
trio-websocket used before, retried every 0.1 s and logged each failure).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
from contextlib import AsyncExitStack

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    RawClient,
    Transport,
    served,
    served_on,
    task_count,
    wait_until,
)
from tests.helpers.canary import canary_feed, hostile_cable, open_fds


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def status_of(port: int) -> int:
    """A full handshake's HTTP status."""
    client = await RawClient.open(port)
    try:
        with trio.fail_after(LOSS_BOUND):
            head = await client.handshake(port)
    finally:
        await client.aclose()
    return int(head.split()[1])


async def trickle(stack: AsyncExitStack, port: int) -> RawClient:
    """A socket that starts a request line and sends nothing more."""
    client = await RawClient.open(port)
    stack.push_async_callback(client.aclose)
    await client.send_bytes(b"GET /cable HT")
    return client


async def test_handshakes_under_way_count_against_max_connections(
    transport: Transport,
) -> None:
    cable = hostile_cable(max_connections=4)
    async with (
        served(cable, transport, connect_timeout=1.0) as port,
        canary_feed(cable, port),
    ):
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            slow = [await trickle(stack, port) for _ in range(3)]
            await wait_until(lambda: cable.handshakes == 3)
            assert await status_of(port) == 503  # 1 canary + 3 + this one > 4
            assert cable.counters["connections_refused"] == 1
            # The handshake timeout drops them; then there is room again.
            with trio.fail_after(LOSS_BOUND):
                for client in slow:
                    assert await client.read_to_eof() == b""  # dropped
            assert cable.handshakes == 0
            assert await status_of(port) == 101
        await wait_until(lambda: task_count() <= tasks and open_fds() <= fds)


async def test_hypercorn_drops_unfinished_handshakes() -> None:
    """Behind Hypercorn the handshake is Hypercorn's: sockets that never
    finish their request are closed by its keep-alive timer (the cable
    never sees them), and a real client is served meanwhile."""
    cable = hostile_cable()
    keep_alive = 1.0
    async with (
        served_on(
            cable, "hypercorn", hypercorn={"keep_alive_timeout": keep_alive}
        ) as port,
        canary_feed(cable, port),
    ):
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            slow = [await trickle(stack, port) for _ in range(50)]
            started = trio.current_time()
            assert await status_of(port) == 101  # served beside them
            with trio.fail_after(keep_alive + LOSS_BOUND):
                for client in slow:
                    assert await client.read_to_eof() == b""  # dropped
            assert trio.current_time() - started >= keep_alive * 0.9
        await wait_until(lambda: task_count() <= tasks and open_fds() <= fds)


async def test_past_max_handshakes_new_sockets_are_closed_at_once(
    caplog: pytest.LogCaptureFixture, transport: Transport
) -> None:
    cable = hostile_cable(max_handshakes=5)
    with caplog.at_level(logging.INFO, "trio_cable"):
        async with (
            served(cable, transport) as port,
            canary_feed(cable, port),
            AsyncExitStack() as stack,
        ):
            held = [await trickle(stack, port) for _ in range(5)]
            await wait_until(lambda: cable.handshakes == 5)
            closed = [await trickle(stack, port) for _ in range(20)]
            with trio.fail_after(LOSS_BOUND):
                for client in closed:
                    # Closed without a word: EOF, or a reset when the bytes
                    # it sent were there, unread, at the close.
                    with contextlib.suppress(trio.BrokenResourceError):
                        await client.read_to_eof()
            assert cable.counters["handshakes_refused"] == 20
            assert cable.handshakes == 5
            for client in held:  # still waiting for the rest of their request
                assert not client.buffer
    assert len(lines(caplog, "closed a new socket")) == 1


async def test_out_of_file_descriptors_backs_off_and_logs_once(
    caplog: pytest.LogCaptureFixture, transport: Transport
) -> None:
    cable = hostile_cable()
    clients = 30
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with caplog.at_level(logging.INFO, "trio_cable"):
        async with served(cable, transport) as port, AsyncExitStack() as stack:
            socks = []
            for _ in range(clients):  # the descriptors, before the limit
                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stack.callback(sock.close)
                socks.append(sock)
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_fds() + 3, hard))
            try:
                for sock in socks:
                    await sock.connect(("127.0.0.1", port))
                # The server accepts a few, then runs out: let it try a while.
                await wait_until(
                    lambda: any(
                        "accept failed" in r.getMessage() for r in caplog.records
                    )
                )
                await trio.sleep(2.0)  # how long it is out of descriptors
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            # With descriptors back, every client gets its handshake done.
            streams = [RawClient(trio.SocketStream(sock)) for sock in socks]
            for client in streams:
                await client.upgrade(port)
    failures = [
        r.getMessage() for r in caplog.records if "accept failed" in r.getMessage()
    ]
    assert len(failures) == 1, failures
    [summary] = [
        r.getMessage() for r in caplog.records if "more like it" in r.getMessage()
    ]
    print(f"{transport}: {summary}")
    more = int(summary.split()[2])
    # Backing off from 0.05 s doubling to 1 s: about 6 tries in 2 s (a
    # fixed 0.1 s retry made 20).
    assert more <= 10, summary
