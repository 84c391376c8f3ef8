"""serve_cable's socket transports, each: it runs the one it is given, and
with ``ssl_context`` it serves ``wss://`` to real TLS clients.

The certificates come from a throwaway certificate authority (``trustme``):
the server presents a certificate for 127.0.0.1 that this CA issued, the
clients trust this CA alone. Two clients: trio_cable's own
(:func:`~trio_cable.client.open_cable_client`, trio-websocket underneath)
and the hand-written RFC 6455 client on a ``trio.SSLStream``, which sees
the exact frames and the close handshake. Other behaviour tests take the
``transport`` fixture too (tests/conftest.py); these are the ones about the
transports themselves.
"""

from __future__ import annotations

import errno
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
import trustme

from tests.helpers import (
    GC_THRESHOLD_CASES,
    LOSS_BOUND,
    RawClient,
    Transport,
    all_tasks,
    raw_connect,
    served,
    wait_until,
)
from trio_cable import Cable, Channel, serve_cable
from trio_cable.client import Connected, Disconnected, open_cable_client
from trio_cable.testing import identifier_for
from trio_cable.transports import trio_websocket as trio_websocket_transport

ROOM = identifier_for("RoomChannel", room="tls")
SERVER_RESTART = {"type": "disconnect", "reason": "server_restart", "reconnect": True}
CONNECT_TIMEOUT = 1.0  # for sockets that never complete a handshake

Frame = dict[str, Any]


# -- certificates --------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


# -- a cable and its server ------------------------------------------------------


class RoomCable(Cable):
    def __init__(self) -> None:
        super().__init__()
        self.schemes: list[str] = []  # what each subscription's request said
        self.clients: list[tuple[str, int] | None] = []
        self.unsubscribed = 0


def room_cable() -> RoomCable:
    cable = RoomCable()

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            cable.schemes.append(self.request.scope["scheme"])
            cable.clients.append(self.request.client)
            self.stream_from(f"room:{self.params['room']}")

        async def unsubscribed(self) -> None:
            cable.unsubscribed += 1

        async def speak(self, data: dict[str, Any]) -> None:
            self.broadcast(f"room:{self.params['room']}", {"said": data["message"]})

    return cable


@asynccontextmanager
async def tls_client(port: int, context: ssl.SSLContext) -> AsyncIterator[RawClient]:
    """The raw client, upgraded to a WebSocket over TLS."""
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=context, https_compatible=True
    )
    client = RawClient(stream)
    try:
        await client.upgrade(port)
        yield client
    finally:
        await trio.aclose_forcefully(stream)


# -- the transport in use --------------------------------------------------------


async def test_serve_cable_runs_the_transport_it_is_given(
    transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    """So that a test parametrised on ``transport`` really covers both."""
    caplog.set_level(logging.INFO, logger="trio_cable")
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable, transport) as port, AsyncExitStack() as stack:
            client = await raw_connect(stack, port)
            await client.subscribe(ROOM)
            (conn,) = cable.connections
            kind = type(conn.transport).__name__
    expected = {"direct": "DirectTransport", "trio-websocket": "WebSocketTransport"}
    assert kind == expected[transport]
    assert f"/cable ({transport})" in caplog.text  # its "serving a cable at" line


@pytest.mark.parametrize(
    ("tune_gc", "chosen", "serving"),
    GC_THRESHOLD_CASES,
)
async def test_the_default_raises_an_untouched_gc_threshold_while_serving(
    transport: Transport,
    tune_gc: bool | None,
    chosen: tuple[int, int, int],
    serving: int,
) -> None:
    """As ``CableApp`` does (tests/server/test_asgi.py): nothing frozen,
    and the threshold put back once the server has stopped."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(*chosen)
    try:
        with trio.fail_after(10):
            async with served(room_cable(), transport, tune_gc=tune_gc):
                assert gc.get_threshold() == (serving, *chosen[1:])
                assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == chosen
    finally:
        gc.set_threshold(*before)


# -- plain GETs beside WebSockets ---------------------------------------------------


async def test_stats_paths_share_the_port_with_websockets(transport: Transport) -> None:
    """With stats and metrics paths, each request's head is read before the
    WebSocket layer sees it (on trio-websocket, by our accept loop, which
    then replays it): a GET sent a byte at a time is answered; a WebSocket
    client is served, and its channel sees the client's real address (not
    the replaying wrapper's); a peer that leaves
    halfway through its head leaves nothing behind; shutting down with a
    head still unfinished is prompt and leaves no task."""
    cable = room_cable()
    tasks_before = all_tasks()
    server_scope = trio.CancelScope()
    serve = partial(
        serve_cable,
        transport=transport,
        stats_path="/cable/stats",
        metrics_path="/metrics",
    )

    async def server(*, task_status: trio.TaskStatus[int]) -> None:
        with server_scope:
            await serve(cable, "127.0.0.1", 0, task_status=task_status)

    with trio.fail_after(LOSS_BOUND):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server)
            serving = all_tasks()

            byte_by_byte = await RawClient.open(port)
            async with byte_by_byte.stream:
                for byte in b"GET /cable/stats HTTP/1.1\r\nHost: x\r\n\r\n":
                    await byte_by_byte.send_bytes(bytes([byte]))
                    await trio.testing.wait_all_tasks_blocked()
                answer = await byte_by_byte.read_to_eof()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert b'"connections": 0' in answer

            async with AsyncExitStack() as stack:
                client = await raw_connect(stack, port, welcome=True)
                await client.subscribe(ROOM)
                assert await cable.broadcast("room:tls", {"n": 1}) == 1
                assert await client.receive() == {
                    "identifier": ROOM,
                    "message": {"n": 1},
                }
                assert isinstance(client.stream, trio.SocketStream)
                assert cable.clients == [client.stream.socket.getsockname()]
                await client.close_handshake()
            await wait_until(lambda: not cable.connections)

            gone = await RawClient.open(port)
            async with gone.stream:
                await gone.send_bytes(b"GET /cable/st")
                await trio.testing.wait_all_tasks_blocked()
            await wait_until(lambda: all_tasks() == serving)

            unfinished = await RawClient.open(port)
            async with unfinished.stream:
                await unfinished.send_bytes(b"GET /metrics HTTP/1.1\r\n")
                await trio.testing.wait_all_tasks_blocked()
                started = trio.current_time()
                server_scope.cancel()
        shutdown = trio.current_time() - started
    assert server_scope.cancelled_caught
    # Well within the 10 s connect_timeout an unfinished head could hold
    # its task for, on a loaded machine too (nothing to drain: at once).
    assert shutdown < 5.0, shutdown
    assert cable.connections == frozenset()
    assert {t.name for t in all_tasks() - tasks_before} == set()


# -- wss:// ------------------------------------------------------------------------


async def test_wss_subscribe_broadcast_and_clean_shutdown(
    transport: Transport,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """Both clients over TLS: the welcome, a subscription, an action's
    broadcast and a broadcast from the server reach both; cancelling the
    server tells the raw client ``server_restart`` and closes with 1000,
    and trio_cable's client hears ``Disconnected("server_restart")``.
    Afterwards nothing of the server is left: no connection, stream or
    task, and every ``unsubscribed()`` ran."""
    cable = room_cable()
    tasks_before = all_tasks()
    raw_frames: list[Frame] = []
    server_scope = trio.CancelScope()  # the server's alone, not the clients'

    async def serve(*, task_status: trio.TaskStatus[int]) -> None:
        with server_scope:
            await serve_cable(
                cable,
                "127.0.0.1",
                0,
                transport=transport,
                ssl_context=server_context,
                task_status=task_status,
            )

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve)
            url = f"wss://127.0.0.1:{port}/cable"
            async with (
                tls_client(port, client_context) as raw,
                open_cable_client(url, ssl_context=client_context) as client,
                client.subscribe("RoomChannel", room="tls") as room,
            ):
                assert await room.receive_event() == Connected(reconnected=False)
                assert await raw.receive() == {"type": "welcome"}
                await raw.subscribe(ROOM)
                assert cable.hub.subscribers("room:tls") == 2

                await room.perform("speak", {"message": "over tls"})
                said = {"identifier": ROOM, "message": {"said": "over tls"}}
                assert await raw.receive() == said
                assert await room.receive() == {"said": "over tls"}
                assert await cable.broadcast("room:tls", {"n": 1}) == 2
                assert await raw.receive() == {"identifier": ROOM, "message": {"n": 1}}
                assert await room.receive() == {"n": 1}

                server_scope.cancel()
                while (frame := await raw.receive()) is not None:
                    raw_frames.append(frame)
                assert raw.close_code == 1000
                event = await room.receive_event()
                assert event == Disconnected("server_restart", reconnecting=True)
    assert server_scope.cancelled_caught
    assert raw_frames == [SERVER_RESTART]
    assert cable.unsubscribed == 2
    assert cable.connections == frozenset()
    assert cable.hub.streams() == []
    assert not cable.is_running
    assert {t.name for t in all_tasks() - tasks_before} == set()


async def test_wss_request_scope_says_wss(
    transport: Transport,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """A channel sees ``self.request.scope["scheme"] == "wss"`` (as ASGI
    servers report it) when the cable is served with ``ssl_context``; and
    the stats path answers over HTTPS on the same port."""
    cable = room_cable()
    serve = partial(
        serve_cable,
        transport=transport,
        ssl_context=server_context,
        stats_path="/cable/stats",
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as server:
            port = await server.start(serve, cable, "127.0.0.1", 0)
            async with tls_client(port, client_context) as raw:
                await raw.subscribe(ROOM)
                https = await trio.open_ssl_over_tcp_stream(
                    "127.0.0.1", port, ssl_context=client_context, https_compatible=True
                )
                async with https:
                    await https.send_all(
                        b"GET /cable/stats HTTP/1.1\r\nHost: x\r\n\r\n"
                    )
                    answer = b""
                    while chunk := await https.receive_some():
                        answer += chunk
            server.cancel_scope.cancel()
    assert cable.schemes == ["wss"]
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["subscriptions"] == 1


@pytest.fixture
def untrusting_context() -> ssl.SSLContext:
    """A client context that trusts another CA (not the server's)."""
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)
    return context


async def test_wss_refuses_what_is_not_tls_and_carries_on(
    transport: Transport,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    untrusting_context: ssl.SSLContext,
) -> None:
    """A client that does not trust the server's certificate fails its
    TLS handshake, and a plain ``ws://`` upgrade request sent to the TLS
    port gets no WebSocket and is hung up on; neither becomes a
    connection, and a trusting client is served afterwards."""
    cable = room_cable()
    serve = partial(
        serve_cable,
        transport=transport,
        ssl_context=server_context,
        connect_timeout=CONNECT_TIMEOUT,
    )
    with trio.fail_after(15):
        async with trio.open_nursery() as server:
            port = await server.start(serve, cable, "127.0.0.1", 0)
            stream = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=untrusting_context
            )
            with pytest.raises(trio.BrokenResourceError) as refused:
                await stream.do_handshake()
            await trio.aclose_forcefully(stream)
            assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)

            # Not a TLS client hello: the server hangs up, at once or (the
            # trio-websocket transport) once connect_timeout has passed.
            plain = await RawClient.open(port)
            async with plain.stream:
                # bound: connect_timeout + 5 s margin for a loaded 2-core machine
                with trio.fail_after(CONNECT_TIMEOUT + 5):
                    try:
                        answer = await plain.handshake(port) + await plain.read_to_eof()
                    except trio.BrokenResourceError:  # reset: hung up too
                        answer = b""
            assert not answer.startswith(b"HTTP/1.1 101")
            assert cable.connections == frozenset()

            async with tls_client(port, client_context) as raw:
                assert await raw.receive() == {"type": "welcome"}
                await raw.subscribe(ROOM)
                assert await cable.broadcast("room:tls", {"still": "serving"}) == 1
                frame = await raw.receive()
                assert frame == {"identifier": ROOM, "message": {"still": "serving"}}
            server.cancel_scope.cancel()
    assert cable.connections == frozenset()


def test_a_peer_gone_before_its_address_is_read_has_none() -> None:
    """trio-websocket: a peer that left right after the handshake has no
    address (None) instead of an OSError (ENOTCONN) that crashed its
    connection as it opened (met by the fuzz test on a loaded machine)."""

    class GonePeer:
        @property
        def remote(self) -> Any:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    assert trio_websocket_transport._client(GonePeer()) is None  # type: ignore[arg-type]
