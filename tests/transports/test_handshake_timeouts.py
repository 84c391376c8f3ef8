"""The direct transport's handshake timeouts: one task closes the sockets
whose handshake is not done by their deadline, never sooner."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from trio_cable.transports.handshake_timeouts import TICK, HandshakeTimeouts


def pair() -> socket.socket:
    ours, theirs = socket.socketpair()
    theirs.close()
    ours.setblocking(False)
    return ours


async def test_late_handshakes_are_closed_done_ones_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timeouts = HandshakeTimeouts(10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timeouts.run)
        started = trio.current_time()
        late, done = pair(), pair()
        timeouts.start(late)
        due = timeouts.start(done)
        await trio.sleep(5)
        due.done(done)
        assert done not in due
        await trio.sleep(10 - 5 - 0.01)
        assert late.fileno() != -1  # not before its deadline
        await trio.sleep(TICK + 0.02)
        assert late.fileno() == -1  # closed within a tick after it
        assert trio.current_time() - started <= 10 + TICK + 0.01
        assert done.fileno() != -1
        # Idle with nothing to time; then a socket arrives and is timed.
        await trio.sleep(100)
        later = pair()
        timeouts.start(later)
        await trio.sleep(10 + TICK)
        assert later.fileno() == -1
        nursery.cancel_scope.cancel()
    done.close()


async def test_a_closed_socket_wakes_what_waits_on_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What a handshake waits for (a read) ends when its socket is cut off."""
    timeouts = HandshakeTimeouts(1.0)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timeouts.run)
        timeouts.start(ours)
        with pytest.raises(trio.ClosedResourceError), trio.fail_after(1 + 2 * TICK):
            await trio.lowlevel.wait_readable(ours)
        nursery.cancel_scope.cancel()
    theirs.close()


def test_a_timeout_is_positive_and_finite() -> None:
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="positive"):
            HandshakeTimeouts(bad)
