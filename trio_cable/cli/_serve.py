"""``serve`` and ``demo``: a cable in this process (direct or
trio-websocket), or Hypercorn's trio worker for apps with HTTP routes."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from functools import partial
from typing import Literal

import trio

from .._cable import Cable
from .._util import single_error
from ._output import OK, USAGE, CommandError, Output
from ._target import Target, load_target

__all__ = [
    "TRANSPORTS",
    "choose_transport",
    "demo",
    "hypercorn_app",
    "hypercorn_command",
    "serve",
]

#: ``--transport`` choices; ``auto`` picks one of the others.
TRANSPORTS = ("auto", "direct", "trio-websocket", "hypercorn")
Chosen = Literal["direct", "trio-websocket", "hypercorn"]


def choose_transport(args: argparse.Namespace, target: Target) -> Chosen:
    """``--transport``, with ``auto`` resolved; usage errors for what the
    chosen transport cannot do."""
    single = args.workers == 1 and not args.reload
    target.stats_path = args.stats_path or target.stats_path
    target.metrics_path = args.metrics_path or target.metrics_path
    endpoints = target.stats_path is not None or target.metrics_path is not None
    if args.transport == "auto":
        direct = target.cable is not None and target.needs_http is None
        return "direct" if direct and single and not endpoints else "hypercorn"
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
        paths = "".join(
            f", {name}={value!r}"
            for name, value in (
                ("stats_path", target.stats_path),
                ("metrics_path", target.metrics_path),
            )
            if value is not None
        )
        wrapped = f"__import__('trio_cable.asgi').asgi.CableApp({target.expr}{paths})"
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
                "tune_gc": True if args.tune_gc else target.tune_gc,
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
    from ..server import serve_cable

    assert target.cable is not None
    serve = partial(
        serve_cable,
        target.cable,
        args.host,
        args.port,
        transport=transport,
        path=target.path,
        tune_gc=True if args.tune_gc else target.tune_gc,
        stats_path=target.stats_path,
        metrics_path=target.metrics_path,
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
    if (args.stats_path or args.metrics_path) and not isinstance(target.value, Cable):
        raise CommandError(
            "--stats-path/--metrics-path apply to a bare Cable under Hypercorn: "
            "give your CableApp stats_path=/metrics_path= instead",
            USAGE,
        )
    env = dict(os.environ)
    app_dir = os.path.abspath(args.app_dir)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = app_dir + (os.pathsep + path if path else "")
    command = hypercorn_command(args, hypercorn_app(target))
    if args.print_command:
        output.data({"transport": "hypercorn", "command": command, "redis": args.redis})
        return OK
    _check_bindable(args.host, args.port)
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


def _check_bindable(host: str, port: int) -> None:
    """Fail in one line, before saying "serving", when Hypercorn could not
    listen (it would print a traceback after we did)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for family, kind, proto, _, address in infos[:1]:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc}") from None


def demo(args: argparse.Namespace, output: Output) -> int:
    # Its pages are HTTP: Hypercorn serves them beside the cable.
    args.app, args.transport = "trio_cable.demo:app", "hypercorn"
    return serve(args, output)
