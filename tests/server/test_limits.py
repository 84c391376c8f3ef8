"""Origins, limits, ``current.user`` and logging: each hit on purpose."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, RawClient, Transport, served, wait_until
from trio_cable import (
    Cable,
    Channel,
    HandshakeRefused,
    Unauthorized,
    current,
)
from trio_cable.testing import TestClient, cable_test_client, identifier_for


def make_cable(**options: Any) -> Cable:
    cable = Cable(**options)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

        async def echo(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": data.get("n")})

        async def who(self) -> None:
            self.transmit(
                {"user": current.user, "same": current.connection is self.connection}
            )

        def who_in_thread(self) -> None:
            self.transmit(
                {"user": current.user, "thread": threading.current_thread().name}
            )

    return cable


async def error(ws: TestClient) -> dict[str, Any]:
    with trio.fail_after(LOSS_BOUND):
        return await ws.receive_matching(lambda f: f.get("type") == "error")


async def still_works(ws: TestClient, n: int = 7) -> None:
    await ws.perform("Room", "echo", {"n": n})
    with trio.fail_after(LOSS_BOUND):
        frame = await ws.receive_matching(lambda f: "echo" in f.get("message", {}))
    assert frame["message"] == {"echo": n}


# -- origins -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "origin", "ok"),
    [
        (None, None, True),  # non-browser clients send no Origin
        (None, "http://testserver", True),  # same origin as Host
        (None, "https://evil.example", False),
        (None, "null", False),
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "https://APP.example", True),
        (["https://app.example"], "https://app.example.evil", False),
        (["https://*.example.com"], "https://chat.example.com", True),
        (["https://*.example.com"], "https://example.com", False),
        (["*"], "https://anything.example", True),
    ],
)
async def test_origin_rules(
    allowed: list[str] | None, origin: str | None, ok: bool
) -> None:
    cable = make_cable(allowed_origins=allowed)
    headers = {} if origin is None else {"Origin": origin}
    if ok:
        async with cable_test_client(cable, headers=headers) as ws:
            await ws.subscribe("Room")
    else:
        with pytest.raises(HandshakeRefused) as info:
            async with cable_test_client(cable, headers=headers):
                pass  # pragma: no cover
        assert info.value.status == 403
        assert cable.counters["origin_refused"] == 1


async def handshake_status(port: int, headers: dict[str, str]) -> int:
    """Send a WebSocket upgrade request; return the HTTP status."""
    client = await RawClient.open(port)
    try:
        with trio.fail_after(LOSS_BOUND):
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            head = await client.handshake(port, headers=extra)
    finally:
        await client.aclose()
    return int(head.split()[1])


async def test_cross_origin_refused_with_403_before_upgrade_over_sockets(
    caplog: pytest.LogCaptureFixture, transport: Transport
) -> None:
    cable = make_cable()
    async with served(cable, transport) as port:
        assert await handshake_status(port, {"Origin": "https://evil.example"}) == 403
        assert cable.counters["origin_refused"] == 1
        # same origin and no origin are upgraded
        same = {"Origin": f"http://127.0.0.1:{port}"}
        assert await handshake_status(port, same) == 101
        assert await handshake_status(port, {}) == 101
    assert "refused a handshake from origin 'https://evil.example'" in caplog.text


async def test_connection_limit_refuses_with_503_and_neighbours_carry_on() -> None:
    cable = make_cable(max_connections=2)
    async with cable_test_client(cable) as one, cable_test_client(cable) as two:
        await one.subscribe("Room")
        with pytest.raises(HandshakeRefused) as info:
            async with cable_test_client(cable):
                pass  # pragma: no cover
        assert info.value.status == 503
        await still_works(one)
        await two.subscribe("Room")
        await still_works(two)
    assert cable.counters["connections_refused"] == 1


async def test_connection_limit_over_sockets(transport: Transport) -> None:
    cable = make_cable(max_connections=1)
    async with served(cable, transport) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            # a first client holds the only slot...
            await stream.send_all(
                b"GET /cable HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await wait_until(lambda: cable.connections)
            # ...so the next handshake is refused before any upgrade
            assert await handshake_status(port, {}) == 503


# -- per-connection limits -------------------------------------------------------


async def test_frame_size_limit() -> None:
    cable = make_cable(max_frame_bytes=1000)
    async with cable_test_client(cable) as ws, cable_test_client(cable) as neighbour:
        await ws.subscribe("Room")
        await neighbour.subscribe("Room")
        await ws.perform("Room", "echo", {"n": 1, "pad": "x" * 2000})
        err = await error(ws)
        assert err["reason"] == "frame_too_large"
        assert err["message"] == "frames are limited to 1000 bytes"
        await still_works(ws)
        await still_works(neighbour)


async def test_identifier_size_and_depth_limits() -> None:
    cable = make_cable(max_identifier_bytes=100, max_json_depth=4)
    async with cable_test_client(cable) as ws:
        await ws.subscribe("Room")
        await ws.send_command("subscribe", identifier_for("Room", pad="x" * 200))
        assert (await error(ws))["reason"] == "identifier_too_large"
        await ws.send_command(
            "subscribe", identifier_for("Room", a={"b": {"c": {"d": {"e": 1}}}})
        )
        err = await error(ws)
        assert err["reason"] == "json_too_deep"
        assert err["message"] == "identifier nests deeper than 4 levels"
        await ws.perform("Room", "echo", {"n": [[[[[1]]]]]})
        assert (await error(ws))["reason"] == "json_too_deep"
        await still_works(ws)


async def test_deeply_nested_json_is_refused_cheaply() -> None:
    cable = make_cable()
    async with cable_test_client(cable) as ws:
        await ws.subscribe("Room")
        await ws.send_raw("[" * 30_000 + "]" * 30_000)  # under the frame limit
        assert (await error(ws))["reason"] in ("invalid_json", "json_too_deep")
        await still_works(ws)


async def test_command_rate_limit(autojump_clock: trio.testing.MockClock) -> None:
    cable = make_cable(commands_per_second=10, command_burst=20)
    async with cable_test_client(cable) as ws, cable_test_client(cable) as neighbour:
        await ws.subscribe("Room")
        await neighbour.subscribe("Room")
        for n in range(40):
            await ws.perform("Room", "echo", {"n": n})
        err = await error(ws)
        assert err["reason"] == "rate_limited"
        assert err["message"] == "more than 10 commands per second"
        echoed = []
        with trio.move_on_after(0.5):
            while True:
                frame = await ws.receive()
                echoed.append(frame["message"]["echo"])
        assert echoed == list(range(19))  # the subscribe took one token
        assert cable.counters["rate_limited"] == 21
        await still_works(neighbour)
        await trio.sleep(1)  # the bucket refills
        await still_works(ws)


async def test_outbox_byte_limit_runs_the_slow_client_policy() -> None:
    cable = make_cable(max_outbox_bytes=10_000, max_outbox_frames=10_000)
    async with (
        cable_test_client(cable) as good,
        cable_test_client(cable, buffer=1) as stalled,
    ):
        await good.subscribe("Room")
        await stalled.subscribe("Room")
        big = "x" * 1000
        for _ in range(30):
            await cable.broadcast("room", {"big": big})
            await good.receive()
        assert cable.counters["too_slow"] == 1
        assert stalled.connection.transport.backlog_bytes <= 10_000


# -- current.user ------------------------------------------------------------------


async def test_current_user_is_per_connection_and_reaches_threads() -> None:
    async def authenticate(request: Any) -> str:
        return request.query["user"]

    cable = make_cable(connect=authenticate)
    async with (
        cable_test_client(cable, query={"user": "ana"}) as ana,
        cable_test_client(cable, query={"user": "bo"}) as bo,
    ):
        for ws, name in ((ana, "ana"), (bo, "bo")):
            await ws.subscribe("Room")
            await ws.perform("Room", "who")
            assert (await ws.receive())["message"] == {"user": name, "same": True}
            await ws.perform("Room", "who_in_thread")
            message = (await ws.receive())["message"]
            assert message["user"] == name
            assert message["thread"] != threading.main_thread().name
    assert current.user is None  # not set outside a connection
    assert current.connection is None


# -- logging ---------------------------------------------------------------------


async def test_logs_name_events_but_never_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-t0ken-value"

    async def authenticate(request: Any) -> None:
        if request.query.get("token") != "good":
            raise Unauthorized()

    cable = make_cable(connect=authenticate, max_frame_bytes=500)
    caplog.set_level(logging.DEBUG, logger="trio_cable")
    async with cable_test_client(
        cable,
        query={"token": "good"},
        cookies={"session": secret},
        headers={"Authorization": f"Bearer {secret}"},
    ) as ws:
        await ws.subscribe("Room")
        await ws.perform("Room", "nope")
        await error(ws)
        await ws.send_raw("x" * 600)
        await error(ws)
    with pytest.raises(Exception, match="unauthorized"):
        async with cable_test_client(cable, query={"token": secret}):
            pass  # pragma: no cover
    text = caplog.text
    assert secret not in text
    assert "open /cable" in text
    assert "closed (client left)" in text
    assert "connection rejected: unauthorized" in text
    assert "unknown_action" in text
    assert "frame_too_large" in text


async def test_hypercorn_refuses_cross_origin_with_403(tmp_path: Any) -> None:
    from tests.interop.servers import ServerProcess

    with ServerProcess("hypercorn", tmp_path) as server:
        await server.wait_ready()
        evil = {"Origin": "https://evil.example"}
        assert await handshake_status(server.port, evil) == 403
        same = {"Origin": f"http://127.0.0.1:{server.port}"}
        assert await handshake_status(server.port, same) == 101
        assert (await server.stats())["connections"] <= 1
