"""``listen`` and ``perform``: the Python client on the command line."""

from __future__ import annotations

import argparse
from contextlib import AbstractAsyncContextManager

import trio

from ..client import (
    ActionFailed,
    CableClient,
    CallTimeout,
    ClientError,
    Connected,
    ConnectionDenied,
    ConnectionUnauthorized,
    Disconnected,
    HistoryLost,
    Message,
    ServerError,
    ServerUnreachable,
    Subscription,
    SubscriptionRejected,
    SubscriptionTimeout,
    open_cable_client,
)
from ._output import DENIED, FAILED, OK, UNREACHABLE, CommandError, Output

__all__ = ["command_error", "listen", "perform"]


def _open_client(args: argparse.Namespace) -> AbstractAsyncContextManager[CableClient]:
    return open_cable_client(
        args.url,
        headers=args.header,
        subscribe_timeout=args.timeout,
        connect_timeout=args.timeout,
    )


def command_error(exc: BaseException) -> CommandError | None:
    if isinstance(exc, ConnectionUnauthorized):
        return CommandError(f"unauthorized: {exc}", DENIED)
    if isinstance(exc, ConnectionDenied):
        return CommandError(f"connection refused ({exc.reason}): {exc}", DENIED)
    if isinstance(exc, ServerUnreachable):
        return CommandError(str(exc), UNREACHABLE)
    if isinstance(exc, SubscriptionRejected):
        reason = f" ({exc.reason})" if exc.reason else ""
        explained = f": {exc.message}" if exc.message else ""
        return CommandError(
            f"subscription rejected{reason}: {exc.identifier}{explained}"
        )
    if isinstance(exc, SubscriptionTimeout):
        return CommandError(f"{exc} (unknown channel?)")
    if isinstance(exc, CallTimeout):
        return CommandError(f"{exc} (not a trio_cable server?)")
    if isinstance(exc, ClientError):
        return CommandError(str(exc))
    return None


async def listen(args: argparse.Namespace, output: Output) -> int:
    params = dict(args.param)
    received = 0
    async with (
        _open_client(args) as client,
        client.subscribe(args.channel, **params) as sub,
    ):
        output.event("subscribed", identifier=sub.identifier)
        if args.count is not None and args.count <= 0:
            return OK
        async for event in sub.events():
            if isinstance(event, Message):
                if output.json:  # one stream of events, told apart by "event"
                    output.event("message", data=event.data)
                else:
                    output.data(event.data)
                received += 1
                if args.count is not None and received >= args.count:
                    return OK
            elif isinstance(event, Disconnected):
                output.event("disconnected", reason=event.reason)
            elif isinstance(event, Connected) and event.reconnected:
                output.event("resubscribed", identifier=sub.identifier)
            elif isinstance(event, HistoryLost):
                output.event("history_lost", identifier=sub.identifier)
            elif isinstance(event, ServerError):
                output.event("server_error", reason=event.reason, message=event.message)
    return OK  # pragma: no cover  (events() never ends)


async def perform(args: argparse.Namespace, output: Output) -> int:
    params = dict(args.param)
    replies = 0
    failed = False
    async with (
        _open_client(args) as client,
        client.subscribe(args.channel, **params) as sub,
    ):
        # What came before the action (e.g. what subscribed() transmitted)
        # is not a reply to it.
        while sub.pending:
            await sub.receive_event()
        if args.reply:
            return await _call(sub, args, output)
        await sub.perform(args.action, args.data)
        with trio.move_on_after(args.wait):
            async for event in sub.events():
                if isinstance(event, ServerError):
                    output.error(f"{event.reason}: {event.message}", FAILED)
                    failed = True
                    break
                if isinstance(event, Message):
                    output.data(event.data)
                    replies += 1
                    if args.count is not None and replies >= args.count:
                        break
    if args.count is not None and replies < args.count and not failed:
        raise CommandError(f"{replies} of {args.count} replies within {args.wait:g}s")
    return FAILED if failed else OK


async def _call(sub: Subscription, args: argparse.Namespace, output: Output) -> int:
    try:
        result = await sub.call(args.action, args.data, timeout=args.timeout)
    except ActionFailed as exc:
        output.error(f"{exc.reason}: {exc.message}", FAILED)
        return FAILED
    output.data(result)
    return OK
