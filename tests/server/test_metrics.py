"""The operator's endpoints: Prometheus metrics and the stats JSON, opt-in
paths on both socket transports of ``serve_cable`` and on ``CableApp``
(under real Hypercorn), fetched over real HTTP from a running server and
read with ``prometheus_client``'s own parser; ``trio-cable stats`` (its
real entry point) against each socket transport."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import LOSS_BOUND, RawClient, RedisServer, Transport, served
from trio_cable import Cable, Channel, Request, Unauthorized
from trio_cable.asgi import CableApp

ROOM = json.dumps({"channel": "RoomChannel"})


def metered_cable(**options: Any) -> Cable:
    cable = Cable(allowed_origins=["http://good.example"], **options)

    @cable.connect
    async def who(request: Request) -> str | None:
        if request.query.get("user") == "intruder":
            raise Unauthorized()
        return None

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

        async def explode(self) -> None:
            raise RuntimeError("a bug")

    return cable


async def http_get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A real HTTP/1.1 GET; (status, headers, body)."""
    with trio.fail_after(LOSS_BOUND):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            raw = b""
            while chunk := await stream.receive_some():
                raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def scrape(port: int, path: str = "/metrics") -> dict[str, dict[Any, float]]:
    """family name -> {(sample name, labels...): value}, through the parser."""
    status, headers, body = await http_get(port, path)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[Any, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.documentation, family.name  # every metric says what it is
        samples = found.setdefault(family.name, {})
        for sample in family.samples:
            key = (sample.name, *sorted(sample.labels.items()))
            samples[key] = sample.value
    return found


async def make_traffic(cable: Cable, port: int) -> RawClient:
    """One of each thing the metrics count; returns the client that stays."""
    client = await RawClient.connect(port, welcome=True)
    await client.subscribe(ROOM)
    assert await cable.broadcast("room", "hello") == 1
    await client.send_text(
        json.dumps({"command": "subscribe", "identifier": '{"channel":"RoomChanel"}'})
    )
    msg = json.dumps({"action": "explod"})
    await client.send_text(
        json.dumps({"command": "message", "identifier": ROOM, "data": msg})
    )
    msg = json.dumps({"action": "explode"})
    await client.send_text(
        json.dumps({"command": "message", "identifier": ROOM, "data": msg})
    )
    seen = []
    with trio.fail_after(LOSS_BOUND):
        while len(seen) < 4:  # the broadcast, the rejection, the two errors
            frame = await client.receive()
            assert frame is not None
            seen.append(frame.get("reason") or frame.get("message"))
    assert seen == ["hello", "unknown_channel", "unknown_action", "server_error"]
    # Refused handshakes: a foreign origin (403), a wrong path (404).
    refused = await RawClient.open(port)
    head = await refused.handshake(port, headers="Origin: http://evil.example\r\n")
    await refused.aclose()
    assert b" 403 " in head.split(b"\r\n")[0] or head == b""
    lost = await RawClient.open(port)
    await lost.handshake(port, "/elsewhere")
    await lost.read_to_eof()
    await lost.aclose()
    # The connect hook refusing (after the WebSocket opened).
    intruder = await RawClient.connect(port, path="/cable?user=intruder")
    await intruder.read_to_end()
    await intruder.aclose()
    return client


def check_counts(metrics: dict[str, dict[Any, float]]) -> None:
    assert metrics["trio_cable_connections"] == {("trio_cable_connections",): 1.0}
    assert metrics["trio_cable_subscriptions"] == {
        ("trio_cable_subscriptions", ("channel", "RoomChannel")): 1.0
    }
    assert metrics["trio_cable_broadcasts"] == {("trio_cable_broadcasts_total",): 1.0}
    assert metrics["trio_cable_deliveries"] == {("trio_cable_deliveries_total",): 1.0}
    assert metrics["trio_cable_action_errors"] == {
        ("trio_cable_action_errors_total",): 1.0
    }
    mistakes = metrics["trio_cable_client_mistakes"]
    assert (
        mistakes[("trio_cable_client_mistakes_total", ("kind", "unknown_channel"))] == 1
    )
    assert (
        mistakes[("trio_cable_client_mistakes_total", ("kind", "unknown_action"))] == 1
    )
    refused = {
        dict(labels)["reason"]: value
        for (_, *labels), value in metrics["trio_cable_handshakes_refused"].items()
    }
    assert refused == {
        "origin": 1.0,
        "not_found": 1.0,
        "connect_hook": 1.0,
        "too_many_connections": 0.0,
    }
    for name in (
        "trio_cable_frames_dropped",
        "trio_cable_slow_clients_disconnected",
        "trio_cable_commands_rate_limited",
        "trio_cable_frames_too_large",
    ):
        assert metrics[name] == {(f"{name}_total",): 0.0}
    assert not any(name.startswith("trio_cable_redis") for name in metrics)


async def test_socket_servers_serve_metrics_and_stats(transport: Transport) -> None:
    cable = metered_cable()
    async with served(
        cable, transport, stats_path="/cable/stats", metrics_path="/metrics"
    ) as port:
        client = await make_traffic(cable, port)
        # the intruder's connection ends after its disconnect frame
        with trio.fail_after(LOSS_BOUND):
            while len(cable.connections) > 1:
                await trio.sleep(0.01)
        check_counts(await scrape(port))
        status, headers, body = await http_get(port, "/cable/stats")
        assert status == 200
        assert headers["content-type"] == "application/json"
        stats = json.loads(body)
        assert stats["connections"] == 1
        assert stats["counters"]["unknown_action"] == 1
        # Not an opted-in path: a plain GET is still refused.
        assert (await http_get(port, "/other"))[0] == 400

        # trio-cable stats through its real entry point, on the cable's URL.
        result = await trio.run_process(
            [sys.executable, "-m", "trio_cable", "stats", "--json",
             f"ws://127.0.0.1:{port}/cable"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["subscriptions"] == 1
        await client.aclose()


async def test_metrics_are_off_unless_asked(transport: Transport) -> None:
    async with served(Cable(), transport) as port:
        status, _, _ = await http_get(port, "/metrics")
        # trio-cable stats says what is missing, in one line.
        result = await trio.run_process(
            [sys.executable, "-m", "trio_cable", "stats",
             f"ws://127.0.0.1:{port}/cable"],
            capture_stdout=True, capture_stderr=True, check=False,
        )  # fmt: skip
    assert status == 400  # a WebSocket server: no HTTP routes by default
    assert result.returncode == 1
    error = result.stderr.decode()
    assert error.count("\n") == 1
    assert "HTTP 400 (is a stats_path set?" in error


@asynccontextmanager
async def hypercorn(app: CableApp) -> AsyncIterator[int]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: serve(app, config, task_status=task_status)
        )
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


async def test_cable_app_serves_metrics_under_hypercorn() -> None:
    cable = metered_cable()
    app = CableApp(cable, stats_path="/cable/stats", metrics_path="/metrics")
    async with hypercorn(app) as port:
        client = await make_traffic(cable, port)
        with trio.fail_after(LOSS_BOUND):
            while len(cable.connections) > 1:
                await trio.sleep(0.01)
        metrics = await scrape(port)
        check_counts(metrics)
        assert (await http_get(port, "/cable/stats"))[0] == 200
        await client.aclose()


async def test_rate_limited_commands_are_counted() -> None:
    cable = metered_cable(commands_per_second=0.001, command_burst=1)
    async with served(cable, metrics_path="/metrics") as port:
        client = await RawClient.connect(port, welcome=True)
        await client.subscribe(ROOM)  # the one token
        for _ in range(3):
            await client.send_text(
                json.dumps({"command": "unsubscribe", "identifier": ROOM})
            )
        with trio.fail_after(LOSS_BOUND):
            assert (await client.receive() or {}).get("reason") == "rate_limited"
        metrics = await scrape(port)
        await client.aclose()
    assert metrics["trio_cable_commands_rate_limited"] == {
        ("trio_cable_commands_rate_limited_total",): 3.0
    }


async def test_redis_bridge_metrics(redis_server: RedisServer) -> None:
    cable = metered_cable(redis_url=redis_server.url)
    async with served(cable, metrics_path="/metrics") as port:
        client = await RawClient.connect(port, welcome=True)
        await client.subscribe(ROOM)
        await cable.broadcast("room", "through redis")
        with trio.fail_after(LOSS_BOUND):
            assert (await client.receive() or {}).get("message") == "through redis"
            while cable.stats()["redis"]["published"] < 1:
                await trio.sleep(0.01)
        metrics = await scrape(port)
        await client.aclose()
    assert metrics["trio_cable_redis_up"] == {("trio_cable_redis_up",): 1.0}
    assert metrics["trio_cable_redis_buffered_broadcasts"] == {
        ("trio_cable_redis_buffered_broadcasts",): 0.0
    }
    assert metrics["trio_cable_redis_lag_seconds"] == {
        ("trio_cable_redis_lag_seconds",): 0.0
    }
    assert metrics["trio_cable_redis_published"] == {
        ("trio_cable_redis_published_total",): 1.0
    }
    assert metrics["trio_cable_redis_subscribed_channels"] == {
        ("trio_cable_redis_subscribed_channels",): 2.0  # room, remote disconnect
    }
    assert "trio_cable_redis_reconnects" in metrics
    assert "trio_cable_redis_dropped_broadcasts" in metrics
