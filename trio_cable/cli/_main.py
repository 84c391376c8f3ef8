"""The entry point: parse, run the command (async ones under trio, with
SIGTERM treated as Ctrl-C), report, exit with the command's code."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import NoReturn

import trio

from .._util import single_error
from ._client import command_error
from ._output import INTERRUPTED, OK, CommandError, Output
from ._parser import build_parser

__all__ = ["main"]


async def _interrupt_on(signals: AsyncIterator[int]) -> None:
    async for _ in signals:
        raise KeyboardInterrupt


async def _run_async(
    command: Callable[[argparse.Namespace, Output], Awaitable[int]],
    args: argparse.Namespace,
    output: Output,
) -> int:
    # SIGTERM ends a command as Ctrl-C does: the socket is closed properly.
    with trio.open_signal_receiver(signal.SIGTERM) as signals, single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_interrupt_on, signals)
            code = await command(args, output)
            nursery.cancel_scope.cancel()
    return code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``trio-cable`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="trio-cable: %(name)s: %(message)s")
    output = Output(getattr(args, "json", False), sys.stdout, sys.stderr)
    try:
        if getattr(args, "is_async", False):
            code = trio.run(_run_async, args.run, args, output)
        else:
            code = args.run(args, output)
    except CommandError as exc:
        output.error(str(exc), exc.code)
        code = exc.code
    except KeyboardInterrupt:
        # listen runs "until interrupted": that is how it succeeds.
        code = OK if args.command == "listen" else INTERRUPTED
    except Exception as exc:
        error = command_error(exc)
        if error is None:
            raise
        output.error(str(error), error.code)
        code = error.code
    sys.exit(code)
