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

import json
import os
import time
import tracemalloc
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    SERVERS,
    FrameCaches,
    RawClient,
    Server,
    Transport,
    drop_stale_deadlines,
    memory_growth,
    raw_connect,
    served,
    served_on,
    task_count,
    traced,
    wait_until,
    ws_frame,
)
from tests.helpers.canary import (
    CANARY,
    CanaryReport,
    canary_feed,
    hostile_cable,
    open_fds,
)
from tests.helpers.hypercorn_proc import get_json, hypercorn_process, read_all, rss_of
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
async def test_a_refused_client_that_never_answers_is_cut(server: Server) -> None:
    """Refused, it sends on and never reads nor answers our close frame:
    its socket is closed within ``close_timeout`` anyway (not at the
    ``message_timeout`` of the message it had begun: past the loss bound)."""
    cable = hostile_cable(
        max_fragments=100, close_timeout=0.5, message_timeout=2 * LOSS_BOUND
    )
    async with served_on(cable, server) as port, canary_feed(cable, port):
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            bad = await raw_connect(stack, port, welcome=True)
            with trio.fail_after(LOSS_BOUND):
                await bad.send_raw(ws_frame(b"", 0x1, fin=False))
                empty = ws_frame(b"", 0x0, fin=False) * 1000
                while await bad.send_raw(empty):
                    pass  # until the server is gone
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
            # Before the send: the server may read the fragment (and start
            # its clock) before send_raw returns.
            started = trio.current_time()
            await bad.send_raw(ws_frame(b'{"command":', 0x1, fin=False))
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
    limit allows, 1,024, then one large frame part after part); once they
    leave, none of it stays. (That an unfinished message times out is
    test_an_unfinished_message_times_out's.)"""
    connections, size = 8, 256 * 1024
    # Never before the whole message arrived: trio-websocket handles a
    # fragment in several times the direct transport's time, tracemalloc
    # slows both, and on a loaded machine 5 s and then 10 s were too short.
    cable = hostile_cable(message_timeout=2 * LOSS_BOUND)
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
                await drop_stale_deadlines()  # the handshakes' scopes
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
                    await client.aclose()
            await leave_no_trace(cable, tasks, fds)
            # The connections' ended scopes wait in trio's deadline heap
            # (their close_timeout cut-offs): not the server's to free.
            await drop_stale_deadlines()
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
    growth = memory_growth(before, after, CONSTANT, "TRIO_CABLE_MEMORY_DETAIL")
    assert growth <= CONSTANT, growth


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


# -- a real Hypercorn process --------------------------------------------------

HOSTILE_APP = f"{Path(__file__).parent / 'hostile_app.py'}:app"
ROOT = str(Path(__file__).parents[2])
#: Clients holding an unfinished message each, and its size: 1,000
#: fragments of 1,000 bytes (under the 1,024-fragment and 1 MiB limits).
HOLDERS, HELD = 8, 1000 * 1000
#: What the process may hold per connection beyond the bytes of its
#: unfinished message (its buffer grows by up to a quarter, as on the
#: direct transport), for wsproto's and Hypercorn's reads of 64 KiB and
#: the heap around eight buffers growing side by side (measured: up to
#: 1.42 times the bytes held in all, about 300 KiB per connection).
RSS_CONSTANT = 384 * 1024


async def test_fragment_attacks_on_a_hypercorn_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real Hypercorn (``--worker-class trio``, CableApp with the default
    limits but ``message_timeout`` 5 s), beside a canary reading the
    worker's own numbered feed: an endless message of empty fragments is
    closed at ``max_fragments`` (1008), 1.2 MB across two fragments with
    1009, eight messages of 1 MB each held unfinished are closed after
    ``message_timeout`` (1008); the worker's RSS grows by at most the
    bytes held (plus a constant per connection), each refusal is
    counted, and the canary loses nothing. With Hypercorn's own
    assembly the first is never closed (it grows as long as the client
    sends) and the held messages are kept for as long as their clients
    like, up to 16 MiB of characters each."""
    monkeypatch.setenv("HOSTILE_OPTIONS", json.dumps({"message_timeout": 5.0}))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([ROOT, *sys_path_env()]))
    feed = CanaryReport()
    logs = bytearray()
    async with (
        hypercorn_process(HOSTILE_APP) as (proc, port),
        AsyncExitStack() as stack,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(read_all, proc.stderr, logs)
        nursery.start_soon(read_all, proc.stdout, logs)
        canary = await raw_connect(stack, port, welcome=True)
        await canary.subscribe(CANARY)
        nursery.start_soon(_read_feed, canary, feed)
        pid = (await get_json(port, "/stats"))["pid"]
        endless = await raw_connect(stack, port, welcome=True)
        large = await raw_connect(stack, port, welcome=True)
        holders = [await raw_connect(stack, port, welcome=True) for _ in range(HOLDERS)]

        async with trio.open_nursery() as flood:
            flood.start_soon(_empty_fragments_forever, endless)
            assert await closed_with(endless) == 1008
            flood.cancel_scope.cancel()
        half = ws_frame(b"x" * 600_000, 0x1, fin=False)
        await large.send_raw(half + ws_frame(b"x" * 600_000, 0x0))
        assert await closed_with(large) == 1009

        base = rss_of(pid)  # after those two: what they left is not held
        for client in holders:
            await client.send_raw(unfinished_in(HELD, 1000))
        with trio.fail_after(LOSS_BOUND):
            while await get_json(port, "/unfinished") < HOLDERS * HELD:
                await trio.sleep(0.05)  # polling another process
        held = rss_of(pid)
        for client in holders:
            assert await closed_with(client) == 1008  # timed out
        after = rss_of(pid)
        with trio.fail_after(LOSS_BOUND):
            while (stats := await get_json(port, "/stats"))["connections"] > 1:
                await trio.sleep(0.05)
        await trio.sleep(0.5)  # the feed goes on after the attacks
        nursery.cancel_scope.cancel()
    if feed.received:  # numbers the canary was owed, from its first
        feed.sent = feed.received[-1] - feed.received[0] + 1
    growth = held - base
    print(
        f"\nhypercorn: {HOLDERS} x {HELD} B held unfinished: RSS {base >> 10} KiB"
        f" -> {held >> 10} KiB (+{growth >> 10} KiB, "
        f"{growth / (HOLDERS * HELD):.2f} x the bytes held), {after >> 10} KiB "
        f"after they timed out; canary: {feed.summary()}"
    )
    assert stats["counters"]["message_refused"] == HOLDERS + 2, stats
    assert growth <= HOLDERS * (HELD * 5 // 4 + RSS_CONSTANT), growth
    assert feed.received, "the canary read nothing"
    first = feed.received[0]
    assert feed.received.tolist() == list(range(first, first + len(feed.received)))
    assert not feed.disconnected, "the canary was disconnected"


def sys_path_env() -> list[str]:
    path = os.environ.get("PYTHONPATH")
    return [path] if path else []


async def _empty_fragments_forever(client: RawClient) -> None:
    """One message of empty fragments, never finished, sent until the
    server stops taking them."""
    await client.send_raw(ws_frame(b"", 0x1, fin=False))
    empty = ws_frame(b"", 0x0, fin=False) * 1000
    while await client.send_raw(empty):
        pass


async def _read_feed(client: RawClient, report: CanaryReport) -> None:
    """The worker's feed as the canary reads it: each number and how late
    it came (the worker wrote when it was due, in this machine's time)."""
    while (frame := await client.receive()) is not None:
        message = frame.get("message")
        if isinstance(message, dict) and "i" in message:
            report.received.append(message["i"])
            report.latencies.append(time.time() - message["due"])
    report.disconnected = True


def unfinished_in(size: int, fragment: int) -> bytes:
    """A message of ``size`` bytes in fragments of ``fragment``, not
    finished."""
    parts = [ws_frame(b"x" * fragment, 0x0, fin=False)] * (size // fragment)
    parts[0] = ws_frame(b"x" * fragment, 0x1, fin=False)
    return b"".join(parts)
