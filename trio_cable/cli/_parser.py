"""The ``trio-cable`` argument parser: every command and its options."""

from __future__ import annotations

import argparse
from typing import Any

from ._args import cable_url, header, json_object, json_value, param
from ._client import listen, perform
from ._output import EXIT_CODES
from ._remote import broadcast, stats
from ._serve import TRANSPORTS, demo, serve

__all__ = ["build_parser"]

_EPILOG = "exit codes:\n" + "\n".join(
    f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items()
)


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", metavar="URL", type=cable_url, help="the cable, e.g. ws://host/cable"
    )
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
        "listening (a CableApp's own tune_gc=True also does; without it, the "
        "collector's first threshold is raised while serving, if untouched)",
    )
    parser.add_argument(
        "--stats-path",
        metavar="PATH",
        help="serve the cable's stats as JSON at PATH (what `trio-cable stats` "
        "reads: the cable's path + /stats, e.g. /cable/stats)",
    )
    parser.add_argument(
        "--metrics-path",
        metavar="PATH",
        help="serve Prometheus metrics at PATH (e.g. /metrics)",
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
    p.add_argument(
        "--reply",
        action="store_true",
        help="call the action and print what it returns (trio_cable servers; "
        "waits up to --timeout)",
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
        "(served at a stats_path: CableApp(..., stats_path='/cable/stats'), "
        "serve_cable(..., stats_path=...) on either transport, or "
        "trio-cable serve --stats-path).",
        "trio-cable stats http://127.0.0.1:8000/cable/stats",
    )
    p.add_argument(
        "url", metavar="URL", help="the stats URL, or the cable's ws:// URL + /stats"
    )
    p.add_argument("--timeout", type=float, default=5.0, help="default: 5")
    p.set_defaults(run=stats)
    return parser


def _version() -> str:
    from .. import __version__

    return f"trio-cable {__version__}"
