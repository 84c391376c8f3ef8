"""The pause a socket transport's reader takes between batches of a
client's input: just a turn for the other tasks while the client keeps to
its rates (``InputBudget``), longer while it is over them (its socket is
not read meanwhile, so TCP pushes back on it). Counted
(``"input_throttled"``) and logged once per episode."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .inbound import InputBudget
from .scope import peer_address

__all__ = ["pause"]


async def pause(
    budget: InputBudget,
    seconds: float,
    count: Callable[[str], None] | None,
    log: logging.Logger,
    peer: object,
    what: str = "",
) -> None:
    """Let the other tasks run, for ``seconds`` if more than 0 (what
    ``budget`` said the client owes). In the log: ``peer`` (the socket or
    stream, its address read only then) and ``what`` (with a trailing
    space) the client sends too fast."""
    if seconds <= 0:
        budget.throttled = False
        await trio.lowlevel.checkpoint()
        return
    if not budget.throttled:
        budget.throttled = True
        if count is not None:
            count("input_throttled")
        log.info(
            "client %s sends %sfaster than allowed; reading it slower",
            peer_address(peer),
            what,
        )
    await trio.sleep(seconds)
