"""The transport contract of sockets that send by waiting (QueuedTransport).

trio-websocket, ASGI and the in-memory transport get ``write_nowait``
from it; the slow-client policy reads its backlog after every write.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.helpers.gated import GatedSocket
from trio_cable.transports import QueuedTransport, TransportClosed


async def test_frames_wait_in_order_and_the_backlog_is_counted() -> None:
    socket = GatedSocket()
    transport = QueuedTransport(socket)
    assert transport.write_nowait("ab") == 2
    assert transport.write_nowait("cde") == 5
    assert (transport.backlog_frames, transport.backlog_bytes) == (2, 5)
    socket.gate.set()
    await transport.flush()
    assert socket.sent == ["ab", "cde"]
    assert (transport.backlog_frames, transport.backlog_bytes) == (0, 0)


async def test_drop_backlog_forgets_what_waits() -> None:
    transport = QueuedTransport(GatedSocket())
    transport.write_nowait("a")
    transport.drop_backlog()
    assert (transport.backlog_frames, transport.backlog_bytes) == (0, 0)


async def test_close_nowait_closes_in_flush_after_the_backlog() -> None:
    socket = GatedSocket()
    transport = QueuedTransport(socket)
    transport.write_nowait("bye")
    assert transport.close_nowait(1001) > 0
    with pytest.raises(TransportClosed):
        transport.write_nowait("late")
    socket.gate.set()
    # The close handshake ran to its end inside flush: it says so, as the
    # writer is the one to end the reader (a receive already waiting is
    # not woken: that would cost a cancel scope per idle connection).
    with pytest.raises(TransportClosed):
        await transport.flush()
    assert socket.sent == ["bye"]
    assert socket.closed_with == 1001
    with pytest.raises(TransportClosed):
        await transport.receive()


async def test_receive_is_the_sockets_own() -> None:
    socket = GatedSocket()
    transport = QueuedTransport(socket)
    socket.incoming_send.send_nowait("hello")
    assert await transport.receive() == "hello"
    socket.incoming_send.close()
    with pytest.raises(TransportClosed):
        await transport.receive()


async def test_a_send_cut_off_breaks_the_transport() -> None:
    socket = GatedSocket()
    transport = QueuedTransport(socket)
    transport.write_nowait("half")
    with trio.move_on_after(0.01):
        await transport.flush()  # the socket never takes it: cut off
    with pytest.raises(TransportClosed):
        transport.write_nowait("next")
    await transport.close()
    assert socket.closed_with == 1000


async def test_a_cancelled_send_that_wrote_nothing_keeps_its_frame() -> None:
    """Hypercorn's sends (shielded once they start) and memory channels:
    a cancelled send wrote nothing, so the frame waits to go first and a
    goodbye can still follow it."""
    socket = GatedSocket(cancel_safe=True)
    transport = QueuedTransport(socket)
    transport.write_nowait("first")
    with trio.move_on_after(0.01):
        await transport.flush()  # the socket never takes it: cancelled
    assert (transport.backlog_frames, transport.backlog_bytes) == (1, 5)
    transport.write_nowait("goodbye")
    socket.gate.set()
    await transport.flush()
    assert socket.sent == ["first", "goodbye"]
