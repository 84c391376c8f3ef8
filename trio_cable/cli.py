"""The ``trio-cable`` command: serve, listen, perform, broadcast, stats.

Output: data goes to stdout as JSON lines; status and errors go to stderr
(coloured on a terminal, unless ``NO_COLOR`` is set), or as JSON objects
with ``--json``. Exit codes: see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib.util import find_spec
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit, urlunsplit

import trio

from ._util import single_error
from .client import (
    ClientError,
    Connected,
    ConnectionDenied,
    ConnectionUnauthorized,
    Disconnected,
    Message,
    ServerError,
    ServerUnreachable,
    SubscriptionRejected,
    SubscriptionTimeout,
    open_cable_client,
)

__all__ = ["EXIT_CODES", "main"]

OK, FAILED, USAGE, UNREACHABLE, DENIED, INTERRUPTED = 0, 1, 2, 3, 4, 130

#: What each exit code means (also in ``trio-cable --help``).
EXIT_CODES = {
    OK: "success",
    FAILED: "the server said no: subscription rejected or unanswered, an error "
    "frame, an HTTP error",
    USAGE: "bad arguments: unknown option, invalid JSON, unimportable app",
    UNREACHABLE: "cannot reach the server",
    DENIED: "the server refused the connection (unauthorized)",
    INTERRUPTED: "interrupted (Ctrl-C) before finishing",
}


class CommandError(Exception):
    """A failure to report in one line and exit with ``code``."""

    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.code = code


# -- output -------------------------------------------------------------------


class Output:
    """Where a command reports: data lines on stdout, status on stderr."""

    def __init__(self, json_mode: bool, out: TextIO, err: TextIO) -> None:
        self.json = json_mode
        self.out = out
        self.err = err
        self.color = _wants_color(err)

    def data(self, value: Any) -> None:
        print(json.dumps(value, ensure_ascii=False), file=self.out, flush=True)

    def event(self, kind: str, **fields: Any) -> None:
        """A status line (``--json``: an object on stdout with ``event``)."""
        if self.json:
            self.data({"event": kind, **fields})
            return
        details = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        self._say(f"{kind} {details}".rstrip(), "36")

    def error(self, message: str, code: int) -> None:
        if self.json:
            payload = {"error": message, "exit_code": code}
            print(json.dumps(payload), file=self.err, flush=True)
        else:
            self._say(f"error: {message}", "31")

    def _say(self, text: str, color: str) -> None:
        if self.color:
            text = f"\033[{color}m{text}\033[0m"
        print(f"trio-cable: {text}", file=self.err, flush=True)


def _wants_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty()


# -- argument types -----------------------------------------------------------


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({exc})") from None


def json_object(text: str) -> dict[str, Any]:
    value = json_value(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def param(text: str) -> tuple[str, Any]:
    """``key=value`` (a string) or ``key:=json`` (any JSON value)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE or KEY:=JSON: {text!r}")
    if key.endswith(":"):
        return key[:-1], json_value(value)
    return key, value


def header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value': {text!r}")
    return name.strip(), value.strip()


# -- serve / demo -------------------------------------------------------------


def hypercorn_command(args: argparse.Namespace) -> list[str]:
    """The Hypercorn command line ``serve`` runs."""
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        f"{args.host}:{args.port}",
        "--workers",
        str(args.workers),
        "--graceful-timeout",
        str(args.graceful_timeout),
        "--log-level",
        args.log_level,
    ]
    if args.reload:
        command.append("--reload")
    return [*command, args.app]


def serve(args: argparse.Namespace, output: Output) -> int:
    module = args.app.partition(":")[0]
    app_dir = os.path.abspath(args.app_dir)
    sys.path.insert(0, app_dir)
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CommandError(f"cannot import module {module!r}", USAGE)
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = app_dir + (os.pathsep + path if path else "")
    if args.redis:
        env["TRIO_CABLE_REDIS_URL"] = args.redis
    command = hypercorn_command(args)
    if args.print_command:
        output.data({"command": command, "redis": args.redis})
        return OK
    output.event(
        "serving",
        app=args.app,
        url=f"http://{args.host}:{args.port}/",
        workers=args.workers,
        redis=args.redis,
    )
    # Hypercorn replaces this process, so signals reach it directly
    # (SIGTERM: connections get server_restart after --graceful-timeout).
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def demo(args: argparse.Namespace, output: Output) -> int:
    args.app = "trio_cable.demo:app"
    return serve(args, output)


# -- listen / perform ---------------------------------------------------------


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "headers": args.header,
        "subscribe_timeout": args.timeout,
        "connect_timeout": args.timeout,
    }


def _connection_error(exc: BaseException) -> CommandError | None:
    if isinstance(exc, ConnectionUnauthorized):
        return CommandError(f"unauthorized: {exc}", DENIED)
    if isinstance(exc, ConnectionDenied):
        return CommandError(f"connection refused ({exc.reason}): {exc}", DENIED)
    if isinstance(exc, ServerUnreachable):
        return CommandError(str(exc), UNREACHABLE)
    if isinstance(exc, SubscriptionRejected):
        reason = f" ({exc.reason})" if exc.reason else ""
        return CommandError(f"subscription rejected{reason}: {exc.identifier}")
    if isinstance(exc, SubscriptionTimeout):
        return CommandError(f"{exc} (unknown channel?)")
    if isinstance(exc, ClientError):
        return CommandError(str(exc))
    return None


async def listen(args: argparse.Namespace, output: Output) -> int:
    params = dict(args.param)
    received = 0
    async with (
        open_cable_client(args.url, **_client_options(args)) as client,
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
            elif isinstance(event, ServerError):
                output.event("server_error", reason=event.reason, message=event.message)
    return OK  # pragma: no cover  (events() never ends)


async def perform(args: argparse.Namespace, output: Output) -> int:
    params = dict(args.param)
    replies = 0
    failed = False
    async with (
        open_cable_client(args.url, **_client_options(args)) as client,
        client.subscribe(args.channel, **params) as sub,
    ):
        # What came before the action (e.g. what subscribed() transmitted)
        # is not a reply to it.
        while sub.pending:
            await sub.receive_event()
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


# -- broadcast / stats --------------------------------------------------------


def broadcast(args: argparse.Namespace, output: Output) -> int:
    url = args.redis or os.environ.get("TRIO_CABLE_REDIS_URL")
    if not url:
        raise CommandError(
            "no Redis URL: pass --redis URL or set TRIO_CABLE_REDIS_URL", USAGE
        )
    try:
        from ._redis import redis_broadcast
    except ImportError as exc:  # redis-py is an optional dependency
        raise CommandError(f"Redis support is not installed: {exc}", USAGE) from None
    try:
        receivers: int = redis_broadcast(
            url, args.stream, args.data, prefix=args.prefix
        )
    except Exception as exc:  # redis-py's errors, without importing it here
        raise CommandError(
            f"cannot broadcast through {url}: {exc}", UNREACHABLE
        ) from None
    if output.json:
        output.data({"stream": args.stream, "processes": receivers})
    else:
        output.event("broadcast", stream=args.stream, processes=receivers)
    return OK


def stats_url(url: str) -> str:
    """``ws://host/cable`` -> ``http://host/cable/stats``; http(s) as is."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return url
    if parts.scheme not in ("ws", "wss"):
        raise CommandError(f"not an http(s):// or ws(s):// URL: {url!r}", USAGE)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.rstrip("/") + "/stats"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def stats(args: argparse.Namespace, output: Output) -> int:
    url = stats_url(args.url)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        hint = " (is CableApp(..., stats_path=...) set?)" if exc.code == 404 else ""
        raise CommandError(f"GET {url}: HTTP {exc.code}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {url}: {reason}", UNREACHABLE) from None
    except ValueError:
        raise CommandError(f"GET {url}: the answer is not JSON") from None
    if output.json:
        output.data(payload)
    else:
        _print_stats(payload, output.out)
    return OK


def _print_stats(payload: dict[str, Any], out: TextIO) -> None:
    def rows(data: dict[str, Any], indent: str = "") -> None:
        width = max((len(str(k)) for k in data), default=0)
        for key, value in data.items():
            if isinstance(value, dict):
                print(f"{indent}{key}:" + ("" if value else " -"), file=out)
                rows(value, indent + "  ")
            else:
                print(f"{indent}{key:<{width}}  {value}", file=out)

    rows(payload)


# -- the parser ---------------------------------------------------------------

_EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items()
)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="the cable, e.g. ws://host/cable")
    parser.add_argument("channel", metavar="CHANNEL", help="channel class name")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        type=param,
        default=[],
        metavar="KEY=VALUE",
        help="identifier param (KEY:=JSON for a non-string value); repeatable",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=header,
        default=[],
        metavar="'NAME: VALUE'",
        help="handshake header, e.g. 'Cookie: session=...'; repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="connect and subscribe timeout (default: 5)",
    )
    parser.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="stop after N messages",
    )


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="default: 8000")
    parser.add_argument(
        "-w", "--workers", type=int, default=1, help="worker processes (default: 1)"
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share broadcasts between workers/servers (sets TRIO_CABLE_REDIS_URL)",
    )
    parser.add_argument(
        "--reload", action="store_true", help="restart when code changes (dev)"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=1,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, wait this long before clients get "
        "server_restart (whole seconds; default: 1)",
    )
    parser.add_argument(
        "--log-level", default="info", help="Hypercorn's log level (default: info)"
    )
    parser.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="import the app from DIR (default: the current directory)",
    )
    parser.add_argument(
        "--print-command",
        action="store_true",
        help="print the Hypercorn command as JSON instead of running it",
    )


def _subparser(
    subparsers: Any, name: str, summary: str, example: str
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=f"{summary}\n\nexample:\n  {example}",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output (JSON lines)"
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-cable",
        description="Serve and talk to Action Cable servers (trio_cable, Rails, "
        "AnyCable).\n\nexample:\n  trio-cable listen ws://127.0.0.1:8000/cable "
        "ChatChannel -p room=general",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _subparser(
        commands,
        "serve",
        "Run an ASGI app under Hypercorn's trio worker.",
        "trio-cable serve myapp:app --port 8000 --redis redis://localhost:6379/0",
    )
    p.add_argument("app", metavar="MODULE:APP", help="e.g. myapp:app")
    _add_serve_options(p)
    p.set_defaults(run=serve)

    p = _subparser(
        commands,
        "demo",
        "Run the demo chat app (open http://127.0.0.1:8000/).",
        "trio-cable demo --port 8000",
    )
    _add_serve_options(p)
    p.set_defaults(run=demo)

    p = _subparser(
        commands,
        "listen",
        "Subscribe and print each message as a JSON line until interrupted "
        "(reconnecting by itself).",
        "trio-cable listen ws://127.0.0.1:8000/cable ChatChannel -p room=general",
    )
    _add_client_options(p)
    p.set_defaults(run=listen, is_async=True)

    p = _subparser(
        commands,
        "perform",
        "Subscribe, perform one action, print the messages that follow.",
        "trio-cable perform ws://127.0.0.1:8000/cable ChatChannel speak "
        '\'{"message": "hi"}\' -p room=general --count 1',
    )
    _add_client_options(p)
    p.add_argument("action", metavar="ACTION", help="the action (method) name")
    p.add_argument(
        "data",
        metavar="JSON",
        nargs="?",
        type=json_object,
        default={},
        help="the action's data, a JSON object (default: {})",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how long to print replies (default: 1; --count ends sooner)",
    )
    p.set_defaults(run=perform, is_async=True)

    p = _subparser(
        commands,
        "broadcast",
        "Broadcast to a stream of a running deployment, through Redis.",
        'trio-cable broadcast chat:general \'{"message": "hi"}\' '
        "--redis redis://localhost:6379/0",
    )
    p.add_argument("stream", metavar="STREAM", help="the stream name")
    p.add_argument("data", metavar="JSON", type=json_value, help="the data (JSON)")
    p.add_argument("--redis", metavar="URL", help="default: $TRIO_CABLE_REDIS_URL")
    p.add_argument(
        "--prefix",
        default="trio_cable:",
        help="Redis channel prefix (default: %(default)s)",
    )
    p.set_defaults(run=broadcast)

    p = _subparser(
        commands,
        "stats",
        "Show a server's connections, subscriptions, streams and counters "
        "(served by CableApp(..., stats_path='/cable/stats')).",
        "trio-cable stats http://127.0.0.1:8000/cable/stats",
    )
    p.add_argument(
        "url", metavar="URL", help="the stats URL, or the cable's ws:// URL + /stats"
    )
    p.add_argument("--timeout", type=float, default=5.0, help="default: 5")
    p.set_defaults(run=stats)
    return parser


def _version() -> str:
    from . import __version__

    return f"trio-cable {__version__}"


# -- entry point --------------------------------------------------------------


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
        error = _connection_error(exc)
        if error is None:
            raise
        output.error(str(error), error.code)
        code = error.code
    sys.exit(code)
