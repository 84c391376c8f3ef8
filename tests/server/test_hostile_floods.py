"""Hostile clients flooding the server with tiny frames, beside a canary.

One client, or ten, write tiny frames as fast as loopback takes them:
bogus commands, empty pings, or two-fragment messages. A canary counts a
numbered feed of 100 broadcasts a second throughout, on the direct
transport, trio-websocket and Hypercorn (see
``tests/helpers/canary.py``). Each case asserts that the canary lost
nothing, that its lateness stays far from the seconds a starved process
shows, that our transports' input budget (direct, and trio-websocket
through its input gate) engaged against one offender (and said so;
Hypercorn reads its sockets itself), and that tasks and file descriptors
are back to where they were once the offenders are gone. The latency
figures printed here are the ones docs/security.md records; the tight
bound (p99 under 100 ms) runs with ``-m soak``, on a machine that is not
loaded by anything else.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from tests.helpers import (
    SERVERS,
    RawClient,
    Server,
    raw_connect,
    served_on,
    task_count,
    wait_until,
    ws_frame,
)
from tests.helpers.canary import CanaryReport, canary_feed, hostile_cable, open_fds

#: How long each attack runs.
ATTACK_SECONDS = 2.0
#: The canary's p99 lateness allowed in the default suite: a starved
#: process made it 4 to 5 s; a loaded 2-core machine stays well under.
LOADED_P99 = 1.0


def scheduled() -> tuple[int, int]:
    """Nanoseconds this process's main thread has run, and waited for a
    core while runnable (Linux's /proc/self/schedstat; (1, 0) elsewhere:
    no stretch)."""
    try:
        ran, waited, _ = Path("/proc/self/schedstat").read_text().split()
    except OSError:
        return 1, 0
    return int(ran), int(waited)


def flood(kind: str) -> bytes:
    """About 64 KiB of one kind of tiny frame, written with one send."""
    if kind == "commands":
        frame = ws_frame(b'{"command":"bogus"}')
    elif kind == "pings":
        frame = ws_frame(b"", 0x9)
    else:  # two-fragment messages: "{" then "}"
        frame = ws_frame(b"{", 0x1, fin=False) + ws_frame(b"}", 0x0)
    return frame * (65536 // len(frame))


async def offend(client: RawClient, chunk: bytes) -> None:
    while await client.send_raw(chunk):
        pass


async def attack(
    server: Server, kind: str, offenders: int, seconds: float
) -> tuple[CanaryReport, float]:
    """Run one flood beside the canary; check what it left behind. Also
    returns how much the machine's load stretched this process's time
    meanwhile: (time run + time waiting for a core) / time run, from the
    kernel's scheduler statistics; 1 on an idle machine."""
    cable = hostile_cable()
    ran, waited = scheduled()
    tasks, fds = task_count(), open_fds()
    chunk = flood(kind)
    async with served_on(cable, server) as port:
        async with (
            canary_feed(cable, port) as canary,
            AsyncExitStack() as stack,
            trio.open_nursery() as nursery,
        ):
            for _ in range(offenders):
                client = await raw_connect(stack, port)
                nursery.start_soon(offend, client, chunk)
            await trio.sleep(seconds)  # the attack's length
            if server != "hypercorn" and offenders == 1:
                # The budget engaged: the attack goes on until it did. Only
                # for one offender: with ten, a loaded machine's own pace
                # may keep each under its budget (then the budget has
                # nothing to hold back; ci0 saw 7 episodes for 10
                # offenders in 2 s, and one run needed 10 s for the first).
                await wait_until(lambda: cable.counters["input_throttled"] >= 1)
            nursery.cancel_scope.cancel()
        ran_after, waited_after = scheduled()
        ran, waited = ran_after - ran, waited_after - waited
        stretch = (ran + waited) / ran if ran else 1.0
        await wait_until(lambda: len(cable.connections) == 0)
    await wait_until(lambda: task_count() <= tasks and open_fds() <= fds)
    print(f"{server} {kind} x{offenders}: {canary.summary()}, stretch {stretch:.2f}")
    return canary, stretch


@pytest.mark.parametrize("offenders", [1, 10])
@pytest.mark.parametrize("kind", ["commands", "pings", "fragments"])
@pytest.mark.parametrize("server", SERVERS)
async def test_tiny_frame_flood(server: Server, kind: str, offenders: int) -> None:
    canary, stretch = await attack(server, kind, offenders, ATTACK_SECONDS)
    # The bound stretches as the machine's load stretched this process: a
    # machine loaded by others (load 7-10 on 2 cores) made the canary
    # 0.8-0.9 s late on trio-websocket and Hypercorn. A canary starved by
    # the flood (4-5 s late on an idle machine before the input budget)
    # still fails.
    bound = LOADED_P99 * max(1.0, stretch)
    assert canary.quantile(0.99) < bound, (canary.summary(), stretch)


@pytest.mark.soak
@pytest.mark.parametrize("offenders", [1, 10])
@pytest.mark.parametrize("kind", ["commands", "pings", "fragments"])
@pytest.mark.parametrize("server", SERVERS)
async def test_tiny_frame_flood_p99_under_100_ms(
    server: Server, kind: str, offenders: int
) -> None:
    canary, stretch = await attack(server, kind, offenders, 10.0)
    assert canary.quantile(0.99) < 0.1, (canary.summary(), stretch)
