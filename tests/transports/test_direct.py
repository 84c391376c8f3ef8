"""The direct transport (:func:`trio_cable.direct.serve_cable_direct`).

Over real loopback sockets: the Action Cable flows with trio-websocket's
client (on a TCP stream the test opens and closes itself), and the
WebSocket edges (handshake refusals, pings, close handshakes, bad
framing, oversized messages) with a raw RFC 6455 client that sends and
reads exactly what it is told. Then shutdown with 200 clients, and a slow
reader beside fast ones with every frame compared byte for byte. The
frame encoder itself is tested without an event loop.
"""

from __future__ import annotations

import json
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.lowlevel
from trio_websocket import WebSocketConnection, wrap_client_stream
from wsproto.frame_protocol import FrameProtocol, Opcode

from tests.helpers import (
    LOSS_BOUND,
    RawClient,
    Transport,
    all_tasks,
    raw_connect,
    served,
    wait_until,
    ws_frame,
)
from trio_cable import Cable, Channel, Request, Unauthorized
from trio_cable._connection import Connection
from trio_cable.direct import DirectTransport, serve_cable_direct
from trio_cable.protocol.codec import encode_payload, message_prefix
from trio_cable.protocol.wsframe import FrameCache, encode_text_frame
from trio_cable.testing import identifier_for
from trio_cable.transports import direct_server as direct_module

PROTOCOL = "actioncable-v1-json"
SERVER_RESTART = {"type": "disconnect", "reason": "server_restart", "reconnect": True}
ROOM = identifier_for("RoomChannel", room="a")

Frame = dict[str, Any]


class RoomCable(Cable):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.events: list[str] = []  # what the unsubscribed() hooks saw


def room_cable(**options: Any) -> RoomCable:
    """RoomChannel: streams ``room:<room>``, says hello before the confirm,
    ``speak`` broadcasts, ``whoami`` transmits the connect hook's identity."""
    cable = RoomCable(**options)

    @cable.connect
    async def authenticate(request: Request) -> str | None:
        if request.query.get("user") == "intruder":
            raise Unauthorized()
        return request.query.get("user") or request.cookies.get("user")

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}")
            self.transmit({"hello": self.params["room"]})

        async def unsubscribed(self) -> None:
            cable.events.append(f"unsubscribed {self.params['room']}")

        async def speak(self, data: dict[str, Any]) -> None:
            self.broadcast(f"room:{self.params['room']}", {"said": data["message"]})

        async def whoami(self) -> None:
            self.transmit({"user": self.current_user})

    return cable


# -- trio-websocket as the client ----------------------------------------------


@asynccontextmanager
async def ws_client(
    port: int, resource: str = "/cable", protocols: tuple[str, ...] = (PROTOCOL,)
) -> AsyncIterator[WebSocketConnection]:
    """trio-websocket's client on a TCP stream we own (its own helper can
    leave the socket open when the server closes first)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, stream, "127.0.0.1", resource, subprotocols=list(protocols)
            )
            try:
                yield ws
            finally:
                await ws.aclose()
    finally:
        await stream.aclose()


async def next_json(ws: WebSocketConnection) -> Frame:
    """The next frame that is not a ping."""
    while True:
        frame: Frame = json.loads(await ws.get_message())
        if frame.get("type") != "ping":
            return frame


def command(name: str, identifier: str = ROOM, **data: Any) -> str:
    cmd: dict[str, Any] = {"command": name, "identifier": identifier}
    if data:
        cmd["data"] = json.dumps(data)
    return json.dumps(cmd)


async def subscribe(ws: WebSocketConnection, identifier: str = ROOM) -> None:
    assert await next_json(ws) == {"type": "welcome"}
    await ws.send_message(command("subscribe", identifier))
    room = json.loads(identifier)["room"]
    assert await next_json(ws) == {"identifier": identifier, "message": {"hello": room}}
    confirm = {"identifier": identifier, "type": "confirm_subscription"}
    assert await next_json(ws) == confirm


# -- a raw client (tests/helpers/wsclient.py) ----------------------------------------


def peer(client: RawClient) -> tuple[str, int]:
    """The client's address, as the server sees it."""
    assert isinstance(client.stream, trio.SocketStream)
    host, port = client.stream.socket.getsockname()[:2]
    return (host, port)


# -- the encoder, without an event loop ----------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frames_parse_as_wsproto_client_frames(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8 too
    data = encode_text_frame(text)
    client = FrameProtocol(client=True, extensions=[])
    client.receive_bytes(data)
    (frame,) = list(client.received_frames())
    assert frame.opcode is Opcode.TEXT
    assert frame.payload == text
    assert frame.frame_finished
    assert frame.message_finished
    header = len(data) - len(text.encode())
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)


def test_frame_cache_is_by_identity() -> None:
    cache = FrameCache(size=2)
    a = "".join(["ab", "c"])
    b = "".join(["a", "bc"])  # equal, but another object: encoded anew
    assert cache.encode(a) is cache.encode(a)
    assert cache.encode(b) == cache.encode(a)
    assert (cache.hits, cache.misses) == (2, 2)
    cache.encode("d")  # full: emptied first
    assert cache.encode(a) == encode_text_frame(a)
    assert cache.misses == 4


# -- the Action Cable flows ----------------------------------------------------


async def test_welcome_subscribe_actions_broadcasts() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with (
            served(cable) as port,
            ws_client(port, "/cable?user=ann") as ann,
            ws_client(port, "/cable?user=bob") as bob,
        ):
            assert ann.subprotocol == PROTOCOL
            await subscribe(ann)
            await subscribe(bob)
            await ann.send_message(command("message", action="speak", message="hi"))
            said = {"identifier": ROOM, "message": {"said": "hi"}}
            assert await next_json(ann) == said
            assert await next_json(bob) == said
            await bob.send_message(command("message", action="whoami"))
            assert await next_json(bob) == {
                "identifier": ROOM,
                "message": {"user": "bob"},
            }
            assert await cable.broadcast("room:a", {"n": 1}) == 2
            for ws in (ann, bob):
                assert await next_json(ws) == {"identifier": ROOM, "message": {"n": 1}}
            # A second subscription on the same socket, by its own identifier.
            other = identifier_for("RoomChannel", room="b")
            await ann.send_message(command("subscribe", other))
            assert (await next_json(ann))["message"] == {"hello": "b"}
            assert (await next_json(ann))["type"] == "confirm_subscription"
            await ann.send_message(command("unsubscribe", other))
            await wait_until(lambda: "unsubscribed b" in cable.events)
        await wait_until(lambda: not cable.connections)
    assert sorted(cable.events) == [
        "unsubscribed a",
        "unsubscribed a",
        "unsubscribed b",
    ]
    assert cable.hub.streams() == []


async def test_errors_leave_the_connection_usable() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, ws_client(port) as ws:
            await subscribe(ws)
            await ws.send_message("{not json")
            error = await next_json(ws)
            assert (error["type"], error["reason"]) == ("error", "invalid_json")
            assert error["identifier"] == ""
            await ws.send_message(command("message", action="_secret"))
            assert (await next_json(ws))["reason"] == "invalid_action"
            unknown = identifier_for("NoSuchChannel")
            await ws.send_message(command("subscribe", unknown))
            rejected = await next_json(ws)
            assert (rejected["type"], rejected["reason"]) == (
                "reject_subscription",
                "unknown_channel",
            )
            assert rejected["identifier"] == unknown
            await ws.send_message(b'{"command":"subscribe"}')  # a binary frame
            assert (await next_json(ws))["reason"] == "invalid_request"
            await ws.send_message(command("message", action="speak", message="ok"))
            assert (await next_json(ws))["message"] == {"said": "ok"}


async def test_connect_hook_sees_the_request_and_can_refuse() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port:
            async with AsyncExitStack() as stack:
                client = await raw_connect(stack, port)
                assert await client.receive() == {"type": "welcome"}
                (conn,) = cable.connections
                assert conn.request.headers["host"] == f"127.0.0.1:{port}"
                assert conn.request.client is not None
                assert conn.request.client[0] == "127.0.0.1"
            async with ws_client(port, "/cable?user=intruder") as ws:
                assert await next_json(ws) == {
                    "type": "disconnect",
                    "reason": "unauthorized",
                    "reconnect": False,
                }
            await wait_until(lambda: not cable.connections)


async def test_the_101_does_not_wait_for_a_slow_connect_hook() -> None:
    """The 101 is held to go out with the welcome in one write, except
    when a connect hook would make it wait: then it goes at once."""
    cable = Cable()
    hook_called, release = trio.Event(), trio.Event()

    @cable.connect
    async def slow(request: Request) -> str:
        hook_called.set()
        await release.wait()
        return "ana"

    with trio.fail_after(10):
        async with served(cable) as port:
            client = await RawClient.open(port)
            async with client.stream:
                head = await client.handshake(port)
                assert head.startswith(b"HTTP/1.1 101 ")
                await hook_called.wait()  # the 101 came while the hook runs
                release.set()
                assert await client.receive() == {"type": "welcome"}


# -- handshakes ----------------------------------------------------------------


async def refused(port: int, path: str = "/cable", headers: str = "") -> bytes:
    """What the server answers an upgrade request it refuses."""
    client = await RawClient.open(port)
    async with client.stream:
        head = await client.handshake(port, path, headers)
        body = await client.read_to_eof()
    return head + b"\r\n\r\n" + body


async def test_cross_origin_is_refused_before_the_upgrade() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port:
            answer = await refused(port, headers="Origin: https://evil.example\r\n")
            assert answer.startswith(b"HTTP/1.1 403 ")
            assert b"101" not in answer.split(b"\r\n")[0]
            same = await RawClient.open(port)
            async with same.stream:
                head = await same.handshake(
                    port, headers=f"Origin: http://127.0.0.1:{port}\r\n"
                )
                assert head.startswith(b"HTTP/1.1 101")
    assert cable.counters["origin_refused"] == 1


async def test_connection_cap_is_503() -> None:
    cable = room_cable(max_connections=1)
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            await raw_connect(stack, port)
            await wait_until(lambda: len(cable.connections) == 1)
            assert (await refused(port)).startswith(b"HTTP/1.1 503 ")


async def test_other_paths_are_404_and_plain_http_is_400() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port:
            assert (await refused(port, "/elsewhere")).startswith(b"HTTP/1.1 404 ")
            client = await RawClient.open(port)
            async with client.stream:
                await client.stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert (await client.read_to_eof()).startswith(b"HTTP/1.1 400 ")
    assert not cable.connections


UPGRADE = (
    b"GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + PROTOCOL.encode()
)


async def test_handshake_refusals_say_why() -> None:
    """Our upgrade parser (transports/upgrade.py) answers each bad request
    in words, and the server carries on."""
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port:
            for request, status, why in [
                (
                    UPGRADE.replace(b": 13", b": 8"),
                    b"426",
                    b"\nSec-WebSocket-Version: 13",
                ),
                (UPGRADE.replace(b"GET", b"PUT"), b"400", b"must be GET"),
                (UPGRADE.replace(b"1.1", b"1.0"), b"400", b"needs HTTP/1.1"),
                (UPGRADE + b"\r\nX: " + b"x" * 20_000, b"431", b"too large"),
            ]:
                client = await RawClient.open(port)
                async with client.stream:
                    await client.stream.send_all(request + b"\r\n\r\n")
                    answer = await client.read_to_eof()
                assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
                assert why in answer
            # A TLS hello on the plain port: refused before it says more.
            client = await RawClient.open(port)
            async with client.stream:
                await client.stream.send_all(b"\x16\x03\x01\x02\x00\x01\x00\n")
                assert (await client.read_to_eof()).startswith(b"HTTP/1.1 400 ")
            async with AsyncExitStack() as stack:
                await (await raw_connect(stack, port)).subscribe(ROOM)
    assert not cable.connections


async def test_a_subscribe_sent_before_the_answer_is_not_lost() -> None:
    """A client may send its first frame right behind its request, in the
    same segment (wsproto's server handshake dropped such bytes)."""
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port:
            client = await RawClient.open(port)
            async with client.stream:
                subscribe = ws_frame(command("subscribe").encode())
                await client.stream.send_all(UPGRADE + b"\r\n\r\n" + subscribe)
                while b"\r\n\r\n" not in client.buffer:
                    client.buffer += await client.stream.receive_some(4096)
                head, _, rest = bytes(client.buffer).partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 101 ")
                client.buffer = bytearray(rest)
                frames = [await client.receive() for _ in range(3)]
    assert frames == [
        {"type": "welcome"},
        {"identifier": ROOM, "message": {"hello": "a"}},
        {"identifier": ROOM, "type": "confirm_subscription"},
    ]


async def test_no_subprotocol_offered_none_selected() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, ws_client(port, protocols=()) as ws:
            assert ws.subprotocol is None
            assert await next_json(ws) == {"type": "welcome"}


async def test_listeners_from_the_caller() -> None:
    cable = room_cable()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            reported = await nursery.start(
                lambda task_status: serve_cable_direct(
                    cable, None, 0, listeners=list(listeners), task_status=task_status
                )
            )
            assert reported == port
            async with ws_client(port) as ws:
                assert await next_json(ws) == {"type": "welcome"}
            nursery.cancel_scope.cancel()


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="set on the listener on Linux only"
)
async def test_sockets_inherit_the_listeners_tcp_options() -> None:
    """The listener carries TCP_NODELAY and TCP_NOTSENT_LOWAT (each accepted
    socket inherits them) and defers accepts until the request arrives; a
    client that connects and says nothing is still accepted (after about
    a second) and dropped at the handshake timeout."""
    cable = room_cable()
    async with served(cable, connect_timeout=0.5) as port, AsyncExitStack() as stack:
        silent = await RawClient.open(port)
        stack.push_async_callback(silent.aclose)
        await raw_connect(stack, port, welcome=True)
        (conn,) = cable.connections
        assert isinstance(conn.transport, DirectTransport)
        sock = conn.transport._sock
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 1 << 14
        with trio.fail_after(direct_module.DEFER_ACCEPT_SECONDS + LOSS_BOUND):
            assert await silent.read_to_eof() == b""
        await wait_until(lambda: cable.handshakes == 0)  # its task ends next
        assert len(cable.connections) == 1  # the talking one, still served


# -- WebSocket edges -----------------------------------------------------------


async def test_ping_is_answered_with_pong() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            client = await raw_connect(stack, port)
            await client.send_frame(0x9, b"are you there")
            while (raw := await client.receive_raw()) is not None:
                if raw[0] == 0xA:
                    assert raw[1] == b"are you there"
                    break
            else:
                raise AssertionError("no pong")


async def test_client_close_handshake() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            client = await raw_connect(stack, port)
            await client.subscribe(ROOM)
            await client.send_frame(0x8, (1000).to_bytes(2, "big") + b"bye")
            while (raw := await client.receive_raw()) is not None:
                if raw[0] == 0x8:
                    assert raw[1][:2] == (1000).to_bytes(2, "big")
                    break
            assert await client.receive_raw() is None  # then the server closes TCP
            await wait_until(lambda: not cable.connections)
    assert cable.events == ["unsubscribed a"]


async def test_fragmented_message_is_reassembled() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            client = await raw_connect(stack, port)
            await client.subscribe(ROOM)
            text = command("message", action="speak", message="in pieces").encode()
            await client.send_frame(0x1, text[:10], fin=False)
            await client.send_frame(0x9, b"a ping in between")  # allowed there
            await client.send_frame(0x0, text[10:30], fin=False)
            await client.send_frame(0x0, text[30:])
            frame = await client.receive()
            assert frame == {"identifier": ROOM, "message": {"said": "in pieces"}}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param({"masked": False}, 1002, id="unmasked"),
        pytest.param({"opcode": 0x3}, 1002, id="reserved-opcode"),
        pytest.param({"payload": b"\xff\xfe"}, 1007, id="invalid-utf8"),
    ],
)
async def test_invalid_framing_closes_only_that_socket(
    frame: dict[str, Any], code: int
) -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            bad = await raw_connect(stack, port)
            good = await raw_connect(stack, port)
            await bad.subscribe(ROOM)
            await good.subscribe(ROOM)
            await bad.send_frame(
                frame.get("opcode", 0x1),
                frame.get("payload", b"{}"),
                masked=frame.get("masked", True),
            )
            while await bad.receive() is not None:
                pass
            assert bad.close_code == code
            await wait_until(lambda: len(cable.connections) == 1)
            await cable.broadcast("room:a", {"still": "here"})
            assert await good.receive() == {
                "identifier": ROOM,
                "message": {"still": "here"},
            }


async def test_oversized_message_is_1009() -> None:
    cable = room_cable()
    with trio.fail_after(10):
        async with (
            served(cable, max_message_size=1000) as port,
            AsyncExitStack() as stack,
        ):
            client = await raw_connect(stack, port)
            await client.subscribe(ROOM)
            await client.send_frame(0x1, b"x" * 600, fin=False)
            await client.send_frame(0x0, b"x" * 600)
            while await client.receive() is not None:
                pass
            assert client.close_code == 1009
            await wait_until(lambda: not cable.connections)


# -- shutdown ------------------------------------------------------------------


async def test_shutdown_tells_200_clients_server_restart() -> None:
    clients = 200
    # A grace long enough that clients answering late on a loaded 2-core
    # machine (they share this process) are not cut off; the bound below
    # stays under close_timeout, so waiting out a close still fails.
    cable = room_cable(close_timeout=5.0, hook_timeout=5.0)
    tasks_before = all_tasks()
    last: list[Frame | None] = [None] * clients
    codes: list[int | None] = [None] * clients

    async def listen(i: int, client: RawClient) -> None:
        while (frame := await client.receive()) is not None:
            last[i] = frame
        codes[i] = client.close_code

    with trio.fail_after(30):
        async with AsyncExitStack() as stack, trio.open_nursery() as listeners:
            async with trio.open_nursery() as server:
                port = await server.start(
                    lambda task_status: serve_cable_direct(
                        cable, "127.0.0.1", 0, task_status=task_status
                    )
                )
                for i in range(clients):
                    client = await raw_connect(stack, port)
                    await client.subscribe(ROOM)
                    listeners.start_soon(listen, i, client)
                assert cable.hub.subscribers("room:a") == clients
                started = trio.current_time()
                server.cancel_scope.cancel()
            server_done = trio.current_time() - started
    print(f"\n{clients} clients: the direct server stopped in {server_done:.3f}s")
    assert last == [SERVER_RESTART] * clients
    assert codes == [1000] * clients
    # bound: every client answered, none was waited out (close_timeout)
    assert server_done < cable.close_timeout
    assert cable.events == ["unsubscribed a"] * clients
    assert cable.connections == frozenset()
    assert cable.hub.streams() == []
    assert not cable.is_running
    assert {t.name for t in all_tasks() - tasks_before} == set()


# -- shared frame bytes and a slow reader --------------------------------------


def queued(conn: Connection) -> int:
    """Frames waiting for a connection's socket, whichever transport."""
    return conn.transport.backlog_frames


async def test_slow_reader_gets_every_frame_byte_exact(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One client reads through a 4 KB receive buffer and naps after
    every frame, so the server's writes to it are cut short by the kernel
    again and again (counted below), while five read fast. Frames of
    every header size (7-, 16- and 64-bit lengths) are shared between all
    six; every byte of every frame, header and payload, must arrive
    exactly as RFC 6455 encodes it, in order, on every socket. On both
    transports; on the direct one each frame is also encoded only once."""
    caches: list[FrameCache] = []

    class Recorded(FrameCache):
        def __init__(self) -> None:
            super().__init__()
            caches.append(self)

    monkeypatch.setattr(direct_module, "FrameCache", Recorded)
    partial_writes: Counter[tuple[str, int]] = Counter()  # by peer address
    with trio.socket.socket() as probe:
        socket_type = type(probe)  # trio's one concrete socket class
    send = socket_type.send

    async def counting_send(sock: Any, data: Any, *args: Any) -> int:
        sent: int = await send(sock, data, *args)
        if sent < len(data):
            partial_writes[sock.getpeername()[:2]] += 1
        return sent

    monkeypatch.setattr(socket_type, "send", counting_send)
    cable = room_cable(max_outbox_frames=100_000, max_outbox_bytes=1 << 30)
    sizes = [10, 100, 200, 1_000, 70_000, 5, 65_000, 300, 125, 126, 65_535, 65_536]
    payloads = [
        encode_payload({"i": i, "pad": chr(0x61 + i % 26) * sizes[i % len(sizes)]})
        for i in range(240)
    ]
    expected = [message_prefix(ROOM) + p + "}" for p in payloads]
    want = [encode_text_frame(text) for text in expected]  # header + payload
    headers = {len(w) - len(t.encode()) for w, t in zip(want, expected, strict=True)}
    assert headers == {2, 4, 10}

    async def read_all(client: RawClient, got: list[bytes], slow: bool) -> None:
        while len(got) < len(want):
            wire = await client.receive_wire()
            assert wire is not None
            opcode, payload, frame = wire
            if opcode == 0x1 and not payload.startswith(b'{"type":"ping"'):
                got.append(frame)
            if slow:
                await trio.sleep(0.002)

    with trio.fail_after(60):
        async with (
            served(cable, transport=transport) as port,
            AsyncExitStack() as stack,
        ):
            slow = await raw_connect(stack, port, receive_buffer=4096)
            slow_peer = peer(slow)
            fast = [await raw_connect(stack, port) for _ in range(5)]
            for client in (slow, *fast):
                await client.subscribe(ROOM)
            received: list[list[bytes]] = [[] for _ in range(6)]
            async with trio.open_nursery() as nursery:
                for i, client in enumerate((slow, *fast)):
                    nursery.start_soon(read_all, client, received[i], i == 0)
                (slow_conn,) = [
                    c for c in cable.connections if c.request.client == slow_peer
                ]
                lagged = 0  # frames queued for the slow one, at most
                for payload in payloads:
                    cable.hub.publish("room:a", payload)
                    await trio.lowlevel.checkpoint()
                    lagged = max(lagged, queued(slow_conn))
                    sock = slow_conn.transport
                    outbox = getattr(sock, "_outbox", None)
                    if outbox is not None and outbox.head_partial:
                        # its own non-blocking socket: the send() was cut short
                        partial_writes[slow_peer] += 1
    print(
        f"\n{transport}: {len(want)} frames, {sum(map(len, want))} bytes to each "
        f"of 6 readers; the slow one lagged by up to {lagged} frames and took "
        f"{partial_writes[slow_peer]} partial writes"
    )
    assert lagged > 10  # it really fell behind
    assert partial_writes[slow_peer] > 10  # and its writes were cut short
    for got in received:
        assert len(got) == len(want)
        for n, (frame, wanted) in enumerate(zip(got, want, strict=True)):
            assert frame == wanted, f"frame {n} differs"
    assert cable.counters["too_slow"] == 0
    if transport == "direct":
        # Each broadcast frame was encoded once, not once per socket.
        (cache,) = caches
        assert cache.hits >= 5 * len(payloads)


async def test_handshake_headers_share_repeated_values_but_never_secrets() -> None:
    """Two handshakes with the same headers: the scopes kept for the
    connections' lifetimes hold one object for a repeated name or value
    (memory per connection), and each its own cookie and key."""
    cable = room_cable()
    with trio.fail_after(10):
        async with served(cable) as port, AsyncExitStack() as stack:
            for _ in range(2):
                client = await RawClient.open(port)
                await stack.enter_async_context(client.stream)
                head = await client.handshake(
                    port, headers="User-Agent: probe/1.0\r\nCookie: s=secret\r\n"
                )
                assert head.startswith(b"HTTP/1.1 101")
            await wait_until(lambda: len(cable.connections) == 2)
            first, second = (
                conn.request.scope["headers"] for conn in cable.connections
            )
            assert len(first) == len(second)
            for pair, other in zip(first, second, strict=True):
                assert pair == other or pair[0] == b"sec-websocket-key"
                assert pair[0] is other[0]
                if pair[0] in (b"cookie", b"sec-websocket-key"):
                    assert pair[1] is not other[1]
                else:
                    assert pair is other  # the very same (name, value)
            (conn, *_) = cable.connections
            assert conn.request.headers["user-agent"] == "probe/1.0"
            assert conn.request.cookies == {"s": "secret"}
