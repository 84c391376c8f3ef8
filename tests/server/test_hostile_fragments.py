"""Hostile clients abusing fragmented messages, beside a canary, on every
server: both transports of ``serve_cable`` and Hypercorn.

Each holds a message to bounds in bytes (UTF-8, as on the wire), in
fragments (empty ones count) and in time: past a bound the socket is
closed (1009 for size, 1008 for fragments and time), the refusal
counted, and nobody else notices. The direct transport puts messages
together itself; trio-websocket does, behind our ``InputGate``, which
finds the frames in what it reads and refuses first. Memory held for
unfinished messages is measured with tracemalloc (server and clients
share this process): per connection it stays within what the client
sent plus a small constant, and it is all given back when the messages
time out.

Hypercorn puts messages together itself (one buffer, counted in
characters, with no fragment count nor deadline); while CableApp's
lifespan runs, its ``WSStream`` is ours (``transports/hypercorn_ws.py``),
which puts them together as the direct transport does. Here Hypercorn
runs in this process; test_hostile_hypercorn.py attacks a real Hypercorn
process and measures its memory.
"""

from __future__ import annotations

import tracemalloc
from contextlib import AsyncExitStack

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    SERVERS,
    FrameCaches,
    RawClient,
    Server,
    Transport,
    raw_connect,
    served,
    served_on,
    task_count,
    traced,
    wait_until,
    ws_frame,
)
from tests.helpers.canary import CANARY, canary_feed, hostile_cable, open_fds
from trio_cable import Cable, Connection
from trio_cable.direct import DirectTransport
from trio_cable.server import WebSocketTransport

#: What an unfinished message may hold beyond its bytes: the direct
#: transport's buffer grows by a quarter as it fills, plus the objects
#: around it.
CONSTANT = 16 * 1024
#: trio-websocket keeps a string per fragment (and per read of a long
#: frame): about 60 bytes each beyond its characters, at most
#: ``max_fragments`` (1,024) of them, and wsproto's buffer of a read.
FRAGMENT_CONSTANT = 64 * 1024 + CONSTANT


async def closed_with(client: RawClient) -> int | None:
    """Read until the server closes; the code of its close frame."""
    with trio.fail_after(LOSS_BOUND):
        while await client.receive_raw() is not None:
            pass
    return client.close_code


async def leave_no_trace(cable: Cable, tasks: int, fds: int) -> None:
    await wait_until(lambda: len(cable.connections) <= 1)  # the canary's
    await wait_until(lambda: task_count() <= tasks and open_fds() <= fds)


@pytest.mark.parametrize("server", SERVERS)
async def test_empty_fragments_are_counted(server: Server) -> None:
    cable = hostile_cable(max_fragments=100)
    async with served_on(cable, server) as port, canary_feed(cable, port):
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            bad = await raw_connect(stack, port, welcome=True)
            # An endless message of empty fragments: not one byte of data.
            head = ws_frame(b"", 0x1, fin=False)
            empty = ws_frame(b"", 0x0, fin=False) * 1000
            await bad.send_raw(head + empty)
            assert await closed_with(bad) == 1008
        await leave_no_trace(cable, tasks, fds)
    assert cable.counters["message_refused"] == 1


@pytest.mark.parametrize("server", SERVERS)
async def test_size_is_counted_in_bytes_across_fragments(server: Server) -> None:
    cable = hostile_cable()
    async with (
        served_on(cable, server, max_message_size=1000) as port,
        canary_feed(cable, port),
        AsyncExitStack() as stack,
    ):
        bad = await raw_connect(stack, port, welcome=True)
        emoji = "\N{GRINNING FACE}".encode()  # 4 bytes, one character
        await bad.send_raw(
            ws_frame(emoji * 100, 0x1, fin=False) + ws_frame(emoji * 151, 0x0)
        )
        assert await closed_with(bad) == 1009
        # 1,000 bytes in 40 fragments pass.
        good = await raw_connect(stack, port, welcome=True)
        await good.subscribe(CANARY)
        text = b'{"command":"subscribe","identifier":"{\\"channel\\":\\"Room\\"}"}'
        frames = [ws_frame(text[i : i + 2], 0x0, fin=False) for i in range(0, 60, 2)]
        frames[0] = ws_frame(text[:2], 0x1, fin=False)
        await good.send_raw(b"".join(frames) + ws_frame(text[60:], 0x0))
        while (frame := await good.receive()) is not None:
            if frame.get("type") == "confirm_subscription":
                break
        assert frame is not None


@pytest.mark.parametrize("server", SERVERS)
async def test_an_unfinished_message_times_out(server: Server) -> None:
    cable = hostile_cable(message_timeout=0.5)
    async with served_on(cable, server) as port, canary_feed(cable, port):
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            bad = await raw_connect(stack, port, welcome=True)
            await bad.send_raw(ws_frame(b'{"command":', 0x1, fin=False))
            started = trio.current_time()
            assert await closed_with(bad) == 1008
            assert trio.current_time() - started >= 0.5
            # A frame header promising more than ever comes times out too.
            slow = await raw_connect(stack, port, welcome=True)
            await slow.send_raw(ws_frame(b"x" * 100, 0x1)[:50])
            assert await closed_with(slow) == 1008
        await leave_no_trace(cable, tasks, fds)
    assert cable.counters["message_refused"] == 2


@pytest.mark.parametrize("fragment", [2, 4096])
async def test_unfinished_messages_hold_what_was_sent_and_no_more(
    monkeypatch: pytest.MonkeyPatch, transport: Transport, fragment: int
) -> None:
    """Eight clients each hold a message of 256 KiB unfinished, in
    fragments of ``fragment`` bytes (2: the most fragments the default
    limit allows, 1,024, then one large frame part after part)."""
    connections, size = 8, 256 * 1024
    # Long enough for the whole message to arrive first (trio-websocket
    # handles a fragment in several times the direct transport's time, and
    # tracemalloc slows both): on a loaded machine 5 s was not, there.
    cable = hostile_cable(message_timeout=5.0 if transport == "direct" else 10.0)
    caches = FrameCaches(monkeypatch)
    tracemalloc.start(1)
    try:
        async with served(cable, transport) as port, canary_feed(cable, port):
            tasks, fds = task_count(), open_fds()
            async with AsyncExitStack() as stack:
                clients = [
                    await raw_connect(stack, port, welcome=True)
                    for _ in range(connections)
                ]
                before = traced(caches)
                for client in clients:
                    await client.send_raw(unfinished(size, fragment))
                await wait_until(
                    lambda: (
                        sum(_buffered(c) for c in cable.connections)
                        >= connections * size
                    )
                )
                during = traced(caches)
                for client in clients:
                    assert await closed_with(client) == 1008  # timed out
            await leave_no_trace(cable, tasks, fds)
            after = traced(caches)
    finally:
        tracemalloc.stop()
    held = _growth(before, during)
    print(
        f"{transport}: {connections} x {size} B in fragments of {fragment} B: "
        f"held {held} B"
    )
    constant = CONSTANT if transport == "direct" else FRAGMENT_CONSTANT
    assert held <= connections * (size * 5 // 4 + constant), held
    assert _growth(before, after) <= CONSTANT, _growth(before, after)


def unfinished(size: int, fragment: int) -> bytes:
    """A message of ``size`` bytes so far, not finished."""
    if fragment == 2:
        parts = [ws_frame(b"xx", 0x1, fin=False)]
        parts += [ws_frame(b"xx", 0x0, fin=False)] * 1022
        parts += [ws_frame(b"x" * (size - 2046), 0x0, fin=False)]
        return b"".join(parts)
    # One frame of size + 1 bytes, all but its last byte.
    return ws_frame(b"x" * (size + 1), 0x1)[:-1]


def _buffered(conn: Connection) -> int:
    assert isinstance(conn.transport, DirectTransport | WebSocketTransport)
    return conn.transport.unfinished_bytes


def _growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> int:
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))
