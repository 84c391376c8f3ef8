"""Waiting for server-side state that has no event to wait on."""

from __future__ import annotations

from collections.abc import Callable

import trio

#: How long :func:`wait_until` waits before calling the state lost. Not a
#: latency budget: the state comes in milliseconds on an idle machine and
#: in well under a second on a loaded 2-core one; the bound only turns a
#: loss into a failure instead of a hang.
LOSS_BOUND = 30.0


async def wait_until(
    predicate: Callable[[], object], timeout: float = LOSS_BOUND, poll: float = 0.005
) -> None:
    """Poll ``predicate`` until it is true; ``trio.TooSlowError`` after
    ``timeout`` seconds (see :data:`LOSS_BOUND`)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(poll)
