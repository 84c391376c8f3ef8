"""The send pool: a few tasks write many queued transports' backlogs.

Each transport's frames leave in order, written by the pool only while its
socket takes writes; a socket that does not goes back to its connection's
writer (the callback ``hand_off`` was given), and so does every transport
waiting when the pool stops.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.helpers import task_count
from tests.helpers.gated import GatedSocket
from trio_cable.transports import QueuedTransport
from trio_cable.transports.send_pool import POOL_FRAME_MAX, SendPool


class Writer:
    """What a connection hands the pool: a callback that starts its writer."""

    def __init__(self) -> None:
        self.started = 0

    def __call__(self) -> None:
        self.started += 1


def open_socket() -> GatedSocket:
    socket = GatedSocket(cancel_safe=True)
    socket.gate.set()
    return socket


async def test_many_transports_written_in_order_with_no_writer() -> None:
    pool = SendPool(workers=2)
    pairs = [(open_socket(), Writer()) for _ in range(5)]
    transports = [QueuedTransport(socket, pool) for socket, _ in pairs]
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        for n in range(3):
            for transport, (_, writer) in zip(transports, pairs, strict=True):
                assert transport.write_nowait(f"f{n}")
                assert transport.hand_off(writer)
        await trio.testing.wait_all_tasks_blocked()
        for (socket, writer), transport in zip(pairs, transports, strict=True):
            assert socket.sent == ["f0", "f1", "f2"]
            assert writer.started == 0
            assert transport.backlog_frames == 0
        nursery.cancel_scope.cancel()


async def test_a_socket_that_takes_no_writes_goes_back_to_its_writer() -> None:
    pool = SendPool(workers=1)
    stuck, writer = GatedSocket(cancel_safe=True), Writer()  # stalled: gate shut
    other, other_writer = open_socket(), Writer()
    transport, healthy = QueuedTransport(stuck, pool), QueuedTransport(other, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        transport.write_nowait("a")
        assert transport.hand_off(writer)
        healthy.write_nowait("b")
        assert healthy.hand_off(other_writer)
        await trio.testing.wait_all_tasks_blocked()
        # Not sent, not lost: the writer was asked for, and the pool went on.
        assert (writer.started, stuck.sending, transport.backlog_frames) == (1, 0, 1)
        assert other.sent == ["b"]
        # The writer flushes once the client reads again.
        stuck.gate.set()
        await transport.flush()
        assert stuck.sent == ["a"]
        nursery.cancel_scope.cancel()


async def test_a_large_frame_is_left_to_the_writer() -> None:
    pool = SendPool(workers=1)
    socket, writer = open_socket(), Writer()
    transport = QueuedTransport(socket, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        transport.write_nowait("small")
        transport.write_nowait("x" * (POOL_FRAME_MAX + 1))
        assert transport.hand_off(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert socket.sent == ["small"]
        assert (writer.started, transport.backlog_frames) == (1, 1)
        nursery.cancel_scope.cancel()


async def test_a_flush_waits_for_the_turn_under_way_and_keeps_the_order() -> None:
    pool = SendPool(workers=1)
    socket, writer = GatedSocket(cancel_safe=True), Writer()
    socket.writable = True  # looks writable, then holds the send
    transport = QueuedTransport(socket, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        transport.write_nowait("a")
        assert transport.hand_off(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert socket.sending == 1  # the pool is sending "a"
        transport.write_nowait("b")
        assert transport.hand_off(writer)  # in its turn: that turn sends it
        flushed = trio.Event()

        async def flush() -> None:
            await transport.flush()
            flushed.set()

        nursery.start_soon(flush)
        await trio.testing.wait_all_tasks_blocked()
        transport.write_nowait("c")
        assert not transport.hand_off(writer)  # a writer is flushing
        assert socket.sending == 1  # still only the pool's send
        socket.gate.set()
        await flushed.wait()
        assert socket.sent == ["a", "b", "c"]
        assert writer.started == 0
        nursery.cancel_scope.cancel()


async def test_stopping_the_pool_hands_what_waits_to_the_writers() -> None:
    tasks = task_count()
    pool = SendPool(workers=1)
    busy, busy_writer = GatedSocket(cancel_safe=True), Writer()
    busy.writable = True  # the one worker waits in its send
    waiting, waiting_writer = open_socket(), Writer()
    first, second = QueuedTransport(busy, pool), QueuedTransport(waiting, pool)
    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        first.write_nowait("a")
        assert first.hand_off(busy_writer)
        await trio.testing.wait_all_tasks_blocked()
        second.write_nowait("b")
        assert second.hand_off(waiting_writer)
        assert pool.waiting == 1
        nursery.cancel_scope.cancel()
    assert task_count() == tasks  # every worker ended with the pool
    assert not pool.running
    # "a" was not sent (a cancel-safe send): both backlogs are the writers'.
    assert (busy_writer.started, first.backlog_frames) == (1, 1)
    assert (waiting_writer.started, second.backlog_frames) == (1, 1)
    assert waiting.sent == []
    # A stopped pool takes nothing more.
    assert not second.hand_off(waiting_writer)
    busy.gate.set()
    await first.flush()
    assert busy.sent == ["a"]


async def test_without_a_pool_the_writer_flushes() -> None:
    transport = QueuedTransport(open_socket())
    transport.write_nowait("a")
    assert not transport.hand_off(Writer())
    await transport.flush()
