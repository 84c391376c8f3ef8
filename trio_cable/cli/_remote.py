"""``broadcast`` (through Redis) and ``stats`` (a server's stats
endpoint): commands about a running deployment, with no WebSocket."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from ._output import OK, UNREACHABLE, USAGE, CommandError, Output

__all__ = ["broadcast", "stats", "stats_url"]


def broadcast(args: argparse.Namespace, output: Output) -> int:
    url = args.redis or os.environ.get("TRIO_CABLE_REDIS_URL")
    if not url:
        raise CommandError(
            "no Redis URL: pass --redis URL or set TRIO_CABLE_REDIS_URL", USAGE
        )
    try:
        from .._redis import redis_broadcast
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
        hint = ""
        if exc.code in (400, 404, 426):  # no such route; a socket server: no GETs
            hint = (
                " (is a stats_path set? CableApp or serve_cable(..., "
                "stats_path='/cable/stats'), or trio-cable serve --stats-path)"
            )
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
