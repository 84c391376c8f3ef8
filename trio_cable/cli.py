"""The ``trio-cable`` command: serve, listen, perform, broadcast, stats.

Output: data goes to stdout as JSON lines; status and errors go to stderr
(coloured on a terminal, unless ``NO_COLOR`` is set), or as JSON objects
with ``--json``. Exit codes: see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import traceback
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib.util import find_spec
from typing import Any, Literal, NoReturn, TextIO
from urllib.parse import urlsplit, urlunsplit

import trio

from ._cable import Cable
from ._channel import Channel
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
    "frame, an HTTP error; serve: cannot listen",
    USAGE: "bad arguments: unknown option, invalid JSON, unimportable app or "
    "one the transport cannot serve",
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

#: ``--transport`` choices; ``auto`` picks one of the others.
TRANSPORTS = ("auto", "direct", "trio-websocket", "hypercorn")
Chosen = Literal["direct", "trio-websocket", "hypercorn"]


@dataclass
class Target:
    """What ``serve``'s ``MODULE:ATTR`` names, and how it may be served."""

    spec: str
    module: str
    expr: str
    value: Any
    #: The cable to serve in this process (``None``: an ASGI app only).
    cable: Cable | None = None
    path: str = "/cable"
    tune_gc: bool = False
    #: Why it needs an HTTP server (``None``: WebSocket alone will do).
    needs_http: str | None = None


def load_target(spec: str, app_dir: str) -> Target:
    """Import ``MODULE:ATTR`` (ATTR evaluated in the module, as Hypercorn
    does, so ``module:make_app()`` works; default ``app``)."""
    from .asgi import CableApp

    module_name, _, expr = spec.partition(":")
    expr = expr or "app"
    sys.path.insert(0, os.path.abspath(app_dir))
    try:
        found = find_spec(module_name) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CommandError(f"cannot import module {module_name!r}", USAGE)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CommandError(
            f"cannot import module {module_name!r}: {_describe(exc)}", USAGE
        ) from None
    try:
        value = eval(expr, vars(module))  # the user's own command line
    except Exception as exc:
        raise CommandError(f"cannot load {spec!r}: {_describe(exc)}", USAGE) from None
    target = Target(spec, module_name, expr, value)
    if isinstance(value, Cable):
        target.cable = value
    elif isinstance(value, CableApp):
        target.cable, target.path = value.cable, value.path
        target.tune_gc = value.tune_gc
        if value.app is not None:
            target.needs_http = "wraps an HTTP app"
        elif value.stats_path is not None:
            target.needs_http = f"serves HTTP (stats_path={value.stats_path!r})"
    elif isinstance(value, type) and issubclass(value, Channel):
        raise CommandError(
            f"{spec} is a Channel: serve the Cable it is registered with", USAGE
        )
    elif callable(value):
        target.needs_http = "is an ASGI app, not a trio_cable.Cable or CableApp"
    else:
        kind = type(value).__name__
        raise CommandError(
            f"{spec} is a {kind}, not a trio_cable.Cable, a CableApp or an ASGI app",
            USAGE,
        )
    return target


def _describe(exc: BaseException) -> str:
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and frames[-1].filename != "<string>":  # not in ATTR itself
        where = f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


def choose_transport(args: argparse.Namespace, target: Target) -> Chosen:
    """``--transport``, with ``auto`` resolved; usage errors for what the
    chosen transport cannot do."""
    single = args.workers == 1 and not args.reload
    if args.transport == "auto":
        direct = target.cable is not None and target.needs_http is None
        return "direct" if direct and single else "hypercorn"
    if args.transport == "hypercorn":
        return "hypercorn"
    name: Chosen = args.transport
    if target.needs_http is not None:
        hint = "" if target.cable is None else f", or serve {target.spec}.cable"
        raise CommandError(
            f"{target.spec} {target.needs_http}, and the {name} transport speaks "
            f"only WebSocket: use --transport hypercorn (or auto){hint}",
            USAGE,
        )
    if not single:
        option = "--reload" if args.reload else f"--workers {args.workers}"
        raise CommandError(
            f"{option} needs --transport hypercorn: the {name} transport serves "
            "from this one process",
            USAGE,
        )
    return name


def hypercorn_app(target: Target) -> str:
    """Hypercorn's ``MODULE:APP`` for ``target``: a bare cable is wrapped
    in a CableApp (Hypercorn evaluates APP in the module)."""
    if isinstance(target.value, Cable):
        wrapped = f"__import__('trio_cable.asgi').asgi.CableApp({target.expr})"
        return f"{target.module}:{wrapped}"
    return target.spec


def hypercorn_command(args: argparse.Namespace, app: str) -> list[str]:
    """The Hypercorn command line ``serve`` runs for ``app``."""
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
    return [*command, app]


def _ws_url(host: str, port: int, path: str) -> str:
    return f"ws://{f'[{host}]' if ':' in host else host}:{port}{path}"


def serve(args: argparse.Namespace, output: Output) -> int:
    if args.redis:  # before the app is imported: it may read it at import
        os.environ["TRIO_CABLE_REDIS_URL"] = args.redis
    target = load_target(args.app, args.app_dir)
    transport = choose_transport(args, target)
    if transport == "hypercorn":
        return _exec_hypercorn(args, output, target)
    assert target.cable is not None  # choose_transport saw to it
    if args.print_command:
        output.data(
            {
                "transport": transport,
                "app": args.app,
                "url": _ws_url(args.host, args.port, target.path),
                "redis": args.redis,
                "tune_gc": target.tune_gc or args.tune_gc,
            }
        )
        return OK
    try:
        level = logging.getLevelNamesMapping()[args.log_level.upper()]
    except KeyError:
        raise CommandError(f"unknown --log-level {args.log_level!r}", USAGE) from None
    logging.getLogger().setLevel(level)
    return trio.run(_serve_here, target, transport, args, output)


async def _serve_here(
    target: Target,
    transport: Literal["direct", "trio-websocket"],
    args: argparse.Namespace,
    output: Output,
) -> int:
    """Serve the cable in this process until SIGTERM or SIGINT, then shut
    down as serve_cable does when cancelled (clients get server_restart)."""
    from .server import serve_cable

    assert target.cable is not None
    serve = partial(
        serve_cable,
        target.cable,
        args.host,
        args.port,
        transport=transport,
        path=target.path,
        tune_gc=target.tune_gc or args.tune_gc,
    )
    stop = (signal.SIGTERM, signal.SIGINT)
    with trio.open_signal_receiver(*stop) as signals, single_error():
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(serve)
            except OSError as exc:
                where = f"{args.host}:{args.port}"
                raise CommandError(f"cannot listen on {where}: {exc}") from None
            output.event(
                "serving",
                app=args.app,
                transport=transport,
                url=_ws_url(args.host, port, target.path),
                redis=args.redis,
            )
            async for signum in signals:
                output.event("stopping", signal=signal.Signals(signum).name)
                break
            nursery.cancel_scope.cancel()
    return OK


def _exec_hypercorn(args: argparse.Namespace, output: Output, target: Target) -> int:
    env = dict(os.environ)
    app_dir = os.path.abspath(args.app_dir)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = app_dir + (os.pathsep + path if path else "")
    command = hypercorn_command(args, hypercorn_app(target))
    if args.print_command:
        output.data({"transport": "hypercorn", "command": command, "redis": args.redis})
        return OK
    output.event(
        "serving",
        app=args.app,
        transport="hypercorn",
        url=f"http://{args.host}:{args.port}/",
        workers=args.workers,
        redis=args.redis,
    )
    # Hypercorn replaces this process, so signals reach it directly
    # (SIGTERM: connections get server_restart after --graceful-timeout).
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def demo(args: argparse.Namespace, output: Output) -> int:
    # Its pages are HTTP: Hypercorn serves them beside the cable.
    args.app, args.transport = "trio_cable.demo:app", "hypercorn"
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
        "-w",
        "--workers",
        type=int,
        default=1,
        help="worker processes (default: 1; more than one: Hypercorn)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share broadcasts between workers/servers (sets TRIO_CABLE_REDIS_URL)",
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="restart when code changes (development; Hypercorn)",
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=1,
        metavar="SECONDS",
        help="Hypercorn: on SIGTERM/SIGINT, wait this long before clients get "
        "server_restart (whole seconds; default: 1). The direct and "
        "trio-websocket transports tell them at once",
    )
    parser.add_argument("--log-level", default="info", help="log level (default: info)")
    parser.add_argument(
        "--tune-gc",
        action="store_true",
        help="direct and trio-websocket: apply trio_cable.tune_gc() once "
        "listening (a CableApp's own tune_gc=True also does)",
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
        help="print what would run (the Hypercorn command, or the transport "
        "and URL) as JSON instead of running it",
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
        "Serve a Cable or CableApp (direct WebSocket transport), or an ASGI "
        "app with HTTP routes (Hypercorn's trio worker).",
        "trio-cable serve myapp:cable --port 8000 --redis redis://localhost:6379/0",
    )
    p.add_argument(
        "app",
        metavar="MODULE:ATTR",
        help="a trio_cable.Cable, a trio_cable.asgi.CableApp or any ASGI app, "
        "e.g. myapp:cable (ATTR defaults to app)",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="auto",
        help="auto (default): direct for a Cable, or a CableApp without HTTP "
        "routes, in one process; otherwise hypercorn",
    )
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
