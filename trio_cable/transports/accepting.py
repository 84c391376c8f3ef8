"""Accept loops that survive running out of file descriptors.

``accept()`` fails with ``EMFILE`` while the process is out of
descriptors, and keeps failing until some are closed. ``trio.serve_listeners``
retries every 0.1 s and logs each failure (ten lines a second for as
long as it lasts); here every socket server of ours backs off instead,
from 0.05 s doubling to 1 s, and writes one line for the first failure
and a summary of the rest (:class:`AcceptBackoff`, through
:class:`~trio_cable._logsummary.LogSummary`). :func:`accept_streams` is
the loop for any ``trio.abc.Listener``; the direct transport's loop on
plain TCP sockets (which takes stdlib sockets from ``accept()``) uses the
same backoff.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn

import trio

from .._logsummary import LogSummary

__all__ = [
    "ACCEPT_BACKOFF",
    "ACCEPT_CAPACITY_ERRNOS",
    "IGNORABLE_ACCEPT_ERRNOS",
    "AcceptBackoff",
    "accept_streams",
]

#: accept() errors that mean "out of descriptors or memory": wait, retry.
ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: accept() errors about one connection that already went away.
IGNORABLE_ACCEPT_ERRNOS: Final = frozenset(
    {errno.ECONNABORTED, errno.EPERM, errno.EPROTO}
)
#: Waits after accept() ran out of descriptors: doubling, up to the last.
ACCEPT_BACKOFF: Final = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)


class AcceptBackoff:
    """How long to wait after each capacity error in a row, and one log
    line (and a summary every 10 s) for the whole run of them, on
    ``log``."""

    def __init__(self, log: logging.Logger) -> None:
        self.errors = 0
        self.log = LogSummary(log, logging.ERROR)

    async def wait(self, exc: OSError) -> None:
        delay = ACCEPT_BACKOFF[min(self.errors, len(ACCEPT_BACKOFF) - 1)]
        self.errors += 1
        self.log.event("accept_failed", "accept failed (%s); backing off", exc)
        await trio.sleep(delay)

    def reset(self) -> None:
        if self.errors:
            self.errors = 0
            self.log.flush()


async def accept_streams(
    listener: trio.abc.Listener[Any],
    serve: Callable[[trio.abc.Stream], Awaitable[object]],
    nursery: trio.Nursery,
    *,
    log: logging.Logger,
    refuse: Callable[[], bool] | None = None,
    name: str | None = None,
) -> NoReturn:
    """Accept on ``listener`` forever; each stream is served by ``serve``
    in a task of ``nursery`` (named ``name``) and closed when it returns,
    as ``trio.serve_listeners`` does. A stream accepted while ``refuse()``
    says so is closed at once. Out of descriptors, the loop backs off
    (:class:`AcceptBackoff`, logging on ``log``); any other accept error
    is raised. The listener is closed when the loop ends.

    Cancellation: the loop ends (and closes the listener) when cancelled;
    the connections' tasks belong to ``nursery``.
    """
    backoff = AcceptBackoff(log)
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                await backoff.wait(exc)
                continue
            backoff.reset()
            if refuse is not None and refuse():
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(_serve_stream, serve, stream, name=name)


async def _serve_stream(
    serve: Callable[[trio.abc.Stream], Awaitable[object]], stream: trio.abc.Stream
) -> None:
    try:
        await serve(stream)
    finally:
        await trio.aclose_forcefully(stream)
