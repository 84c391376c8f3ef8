"""Stalled readers under a broadcast storm, on every transport, beside a
canary (issue 15, point 3).

Clients subscribe and then never read again (a small receive buffer, so
the server's writes back up soon) while the feed's stream is stormed.
Each must be cut off within a bound and its slot, tasks and socket
freed; the canary, which reads, loses nothing and is never cut.

Hypercorn shields its sends from cancellation, so a writer stuck on a
client that does not read cannot be cancelled: the connection closes the
server's socket under it instead. Hypercorn runs here in this process
(``hypercorn.trio.serve``, its real trio worker code) so that the test
can count the cable's connections and tasks directly (``served_on``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio

from tests.helpers import RawClient, Server, served_on, task_count, wait_until
from tests.helpers.canary import CANARY, canary_feed, hostile_cable, open_fds

STALLED = 20


@pytest.mark.parametrize(
    ("server", "burst"),
    [
        ("direct", 1),
        ("trio-websocket", 1),
        ("hypercorn", 1),
        pytest.param("direct", 10, id="direct-busy"),
        pytest.param("trio-websocket", 10, id="trio-websocket-busy"),
        pytest.param("hypercorn", 10, id="hypercorn-busy"),
    ],
)
async def test_stalled_readers_are_cut_and_freed(server: Server, burst: int) -> None:
    """``burst`` broadcasts a millisecond (10: a busy server, whose
    writers fall behind the reading canary too: it must not be cut)."""
    cable = hostile_cable(max_outbox_frames=64, close_timeout=0.5)
    async with served_on(cable, server) as port, canary_feed(cable, port) as canary:
        tasks, fds = task_count(), open_fds()
        async with AsyncExitStack() as stack:
            for _ in range(STALLED):
                client = await RawClient.connect(port, receive_buffer=4096)
                stack.push_async_callback(client.aclose)
                await client.subscribe(CANARY)  # then never reads again
            # The storm: 1 KiB broadcasts until every stalled one is cut.
            pad = "x" * 1024
            stormed = 0
            with trio.fail_after(30):
                while len(cable.connections) > 1:
                    for _ in range(burst):
                        cable.broadcast_nowait("canary", {"pad": pad})
                    stormed += burst
                    # Never more than half its outbox ahead of the canary,
                    # which reads in this process: on a loaded machine it
                    # gets too few turns to read 10 frames a millisecond
                    # and was cut as too slow, rightly (what it had not
                    # read was past the limit). The server stays as busy as
                    # the canary can read; the stalled ones still fill up.
                    while stormed - canary.others > 32:
                        await trio.sleep(0.001)
                    await trio.sleep(0.001)
            assert cable.counters["too_slow"] == STALLED  # not the canary
            await wait_until(lambda: task_count() <= tasks)
        await wait_until(lambda: open_fds() <= fds)
    print(f"{server}: {STALLED} stalled clients cut; canary {canary.summary()}")
