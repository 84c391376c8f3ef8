"""Broadcasts on Hypercorn go out through the send pool (issue 17).

A broadcast to N subscribers used to start N writer tasks (one per socket,
each sending one frame and ending); with ``CableApp``'s send pool a few
tasks write every socket's frames. Real Hypercorn (its trio worker, in
this process) and real sockets; the count is of tasks started, read from a
trio instrument, so it holds on a loaded machine.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
import trio.lowlevel

from tests.helpers import raw_connect, served_on
from trio_cable import Cable, Channel
from trio_cable.asgi import CableApp
from trio_cable.testing import identifier_for

SUBSCRIBERS = 20
BROADCASTS = 30
ROOM = identifier_for("Room")


class Spawned(trio.abc.Instrument):
    """Counts the tasks started while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


def room_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

    return cable


@pytest.mark.parametrize("send_pool", [True, False])
async def test_broadcasts_reach_everyone_in_order(send_pool: bool) -> None:
    """Every frame, in order, on both paths; tasks started counted."""
    cable = room_cable()
    app = CableApp(cable, send_pool=send_pool)
    async with (
        served_on(cable, "hypercorn", app=app) as port,
        AsyncExitStack() as stack,
    ):
        clients = [
            await raw_connect(stack, port, welcome=True) for _ in range(SUBSCRIBERS)
        ]
        for client in clients:
            await client.subscribe(ROOM)
        spawned = Spawned()
        trio.lowlevel.add_instrument(spawned)
        try:
            with trio.fail_after(30):  # a failure bound, not the wait
                # One at a time, each read by all before the next: a
                # writer task per socket would end and start again each time.
                for n in range(BROADCASTS):
                    cable.broadcast_nowait("room", {"n": n})
                    for client in clients:
                        frame = await client.receive()
                        while frame is not None and "message" not in frame:
                            frame = await client.receive()  # a ping
                        assert frame is not None
                        assert frame["message"] == {"n": n}
        finally:
            trio.lowlevel.remove_instrument(spawned)
    if send_pool:
        assert app.send_pool is not None
        assert app.send_pool.turns >= SUBSCRIBERS
        # No task per subscriber: whatever Hypercorn itself starts meanwhile
        # is a few, not one per socket per broadcast.
        assert spawned.count < SUBSCRIBERS
    else:
        # The writers the pool replaces: about one per socket per broadcast
        # (one may still be ending when the next broadcast comes).
        assert spawned.count >= SUBSCRIBERS * BROADCASTS // 2
