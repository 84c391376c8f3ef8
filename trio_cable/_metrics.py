"""The cable's numbers for operators, as the HTTP endpoints answer them:
the stats JSON (``trio-cable stats``) and the Prometheus text format.

Both are opt-in paths (``CableApp(stats_path=..., metrics_path=...)``,
``serve_cable(..., stats_path=..., metrics_path=...)`` on either
transport), computed on request from counters the cable keeps anyway: a
scrape costs a walk over the open connections, nothing between scrapes.
The metrics are documented in docs/guide.md ("Metrics").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._cable import Cable

__all__ = ["METRICS_CONTENT_TYPE", "http_routes", "metrics_text", "stats_json"]

#: The Prometheus text exposition format, version 0.0.4.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, str], float]

#: Counter name in ``cable.counters`` -> the ``reason`` label of
#: ``trio_cable_handshakes_refused_total``.
_REFUSALS = {
    "origin_refused": "origin",
    "connections_refused": "too_many_connections",
    "path_refused": "not_found",
    "connect_hook_refused": "connect_hook",
}


def stats_json(cable: Cable) -> bytes:
    """``cable.stats()`` and the process id, as JSON."""
    return json.dumps({"pid": os.getpid(), **cable.stats()}).encode()


def http_routes(
    cable: Cable, stats_path: str | None, metrics_path: str | None
) -> Callable[[str], tuple[str, bytes] | None] | None:
    """What a socket server answers to a plain GET: path -> (type, body)."""
    if stats_path is None and metrics_path is None:
        return None

    def answer(path: str) -> tuple[str, bytes] | None:
        if path == stats_path:
            return "application/json", stats_json(cable)
        if path == metrics_path:
            return METRICS_CONTENT_TYPE, metrics_text(cable).encode()
        return None

    return answer


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(
        self, name: str, kind: str, help_text: str, samples: Iterable[Sample]
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            head = f"{name}{{{label_text}}}" if label_text else name
            self.lines.append(f"{head} {float(value)!r}")


def metrics_text(cable: Cable) -> str:
    """Every metric of the cable, in the Prometheus text format."""
    counters = cable.counters
    hub = cable.hub.statistics()
    by_channel: Counter[str] = Counter()
    for conn in cable.connections:
        for record in conn.protocol.subscriptions.values():
            by_channel[record.rules.name] += 1
    out = _Exposition()
    out.add(
        "trio_cable_connections",
        "gauge",
        "Open WebSocket connections.",
        [({}, len(cable.connections))],
    )
    out.add(
        "trio_cable_subscriptions",
        "gauge",
        "Open subscriptions, by channel.",
        [({"channel": name}, n) for name, n in sorted(by_channel.items())],
    )
    out.add("trio_cable_streams", "gauge", "Streams with a local subscriber.",
            [({}, hub.streams)])  # fmt: skip
    for name, help_text, value in (
        ("broadcasts", "Broadcasts published in this process.", hub.broadcasts),
        ("deliveries", "Frames handed to local subscribers.", hub.deliveries),
        (
            "frames_dropped",
            "Frames dropped unsent when a too slow client was cut.",
            counters["frames_dropped"],
        ),
        (
            "slow_clients_disconnected",
            "Clients disconnected as too_slow (outbound queue full).",
            counters["too_slow"],
        ),
        (
            "commands_rate_limited",
            "Client commands refused by the rate limit.",
            counters["rate_limited"],
        ),
        ("action_errors", "Actions that raised.", counters["action_errors"]),
        (
            "frames_too_large",
            "Client frames refused as too large.",
            counters["frame_too_large"],
        ),
    ):
        out.add(f"trio_cable_{name}_total", "counter", help_text, [({}, value)])
    out.add(
        "trio_cable_handshakes_refused_total",
        "counter",
        "Connections refused, by reason.",
        [({"reason": label}, counters[key]) for key, label in _REFUSALS.items()],
    )
    out.add(
        "trio_cable_client_mistakes_total",
        "counter",
        "Subscriptions to unknown channels and performs of unknown actions.",
        [
            ({"kind": kind}, counters[kind])
            for kind in ("unknown_channel", "unknown_action")
        ],
    )
    bridge = cable.broker.statistics()
    if bridge is not None:
        redis: list[tuple[str, str, str, float]] = [
            ("up", "gauge", "1 while the Redis bridge is connected.", bridge.connected),
            ("lag_seconds", "gauge",
             "How long the oldest broadcast waiting for Redis has waited.", bridge.lag),
            ("buffered_broadcasts", "gauge",
             "Broadcasts waiting to be published to Redis.", bridge.buffered),
            ("subscribed_channels", "gauge",
             "Redis channels subscribed (acknowledged).", bridge.channels),
            ("reconnects_total", "counter",
             "Reconnections to Redis.", bridge.reconnects),
            ("published_total", "counter",
             "Broadcasts published to Redis.", bridge.published),
            ("received_total", "counter",
             "Messages received from Redis.", bridge.received),
            ("dropped_broadcasts_total", "counter",
             "Broadcasts dropped from a full publish buffer.", bridge.dropped),
        ]  # fmt: skip
        for suffix, kind, about, reading in redis:
            out.add(f"trio_cable_redis_{suffix}", kind, about, [({}, reading)])
    return "\n".join(out.lines) + "\n"
