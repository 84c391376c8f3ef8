"""The client's one long-lived task: connect, and after a loss wait with
capped, jittered exponential backoff and connect again, until stopped or
told to give up."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

from .._errors import ConnectionLost, ServerUnreachable
from ._connection import ClientConnection
from ._handshake import SessionEnded
from ._session import run_session

__all__ = ["backoff_delay", "run_client"]

log = logging.getLogger("trio_cable.client")


def backoff_delay(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0-based):
    ``base * 2**attempt`` capped at ``cap``, then jittered down by up to
    half, so many clients dropped at once do not come back in lockstep."""
    delay = min(cap, base * 2.0 ** min(attempt, 30))
    return delay * (1 - 0.5 * rng())


async def run_client(conn: ClientConnection) -> None:
    """Connect, serve the connection, reconnect with backoff; until
    :meth:`ClientConnection.stop` or a fatal error (which ends the client)."""
    options = conn.options
    with trio.CancelScope(shield=True):
        attempt = 0
        down_since = trio.current_time()
        while True:  # once stopped, run_session returns at once
            try:
                await run_session(conn)
                return  # stopped
            except SessionEnded as ended:
                if ended.welcomed:
                    attempt, down_since = 0, trio.current_time()
                if conn.stopping:
                    return
                _give_up_if_needed(conn, ended, down_since)
                log.info("connection to %s lost (%s)", conn.url, ended.reason)
                with conn.interruptible():
                    await trio.sleep(
                        backoff_delay(
                            attempt,
                            options.reconnect_delay,
                            options.max_reconnect_delay,
                        )
                    )
                attempt += 1


def _give_up_if_needed(
    conn: ClientConnection, ended: SessionEnded, down_since: float
) -> None:
    options = conn.options
    if not conn.ever_connected and not options.wait_for_server:
        raise ServerUnreachable(f"cannot connect to {conn.url}: {ended.reason}")
    if conn.ever_connected and not options.reconnect:
        raise ConnectionLost(ended.reason)
    limit = options.give_up_after
    if limit is not None and trio.current_time() - down_since > limit:
        raise ServerUnreachable(
            f"no connection to {conn.url} for {limit:g}s: {ended.reason}"
        )
