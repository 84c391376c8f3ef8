"""``trio_cable.run``: ``trio.run`` for a server program, where SIGINT
(Ctrl-C) and SIGTERM mean "shut down cleanly", not a traceback."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from ._util import single_error

__all__ = ["run"]

log = logging.getLogger("trio_cable.run")

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run(
    async_fn: Callable[..., Awaitable[T]],
    *args: Any,
    signals: Iterable[int] = STOP_SIGNALS,
) -> T | None:
    """Run ``async_fn(*args)`` with trio until it returns or a signal
    arrives; returns its result, or ``None`` after a signal.

    A signal in ``signals`` (SIGINT and SIGTERM) cancels ``async_fn``, so
    everything it runs shuts down the structured way: a
    :func:`~trio_cable.serve_cable` in its nursery sends its clients
    ``server_restart``, closes them, runs every ``unsubscribed()`` and the
    cable's background tasks end first; then ``run`` returns. No
    ``KeyboardInterrupt`` traceback. A second signal during that bounded
    shutdown is ignored (the shutdown is bounded by the cable's
    ``close_timeout`` plus ``hook_timeout``).

    Errors from ``async_fn`` propagate as themselves (one error out of
    nested nurseries is not wrapped in an exception group).

    Must be called from the main thread (signal handlers live there).
    """
    stop = tuple(signals)

    async def main() -> T | None:
        result: list[T] = []
        with trio.open_signal_receiver(*stop) as received, single_error():
            async with trio.open_nursery() as nursery:

                async def body() -> None:
                    result.append(await async_fn(*args))
                    nursery.cancel_scope.cancel()

                async def watch() -> None:
                    async for signum in received:
                        log.warning("%s: shutting down", signal.Signals(signum).name)
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(watch)
                nursery.start_soon(body)
        return result[0] if result else None

    return trio.run(main)
