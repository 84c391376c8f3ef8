"""The one raw WebSocket client of the tests, written by hand (RFC 6455)
on a trio stream, and :func:`ws_frame`, which writes any frame at all.

It reads only when asked (nothing reads on its behalf, so a stall is
honest), answers the server's close frame, keeps every frame's exact
bytes, and costs one socket and no task: cheap enough for thousands of
clients in the test process. Written by hand so that a test can send
anything, legal or not.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
from contextlib import AsyncExitStack
from typing import Any

import trio

from tests.helpers.waiting import LOSS_BOUND

__all__ = ["PROTOCOL", "RawClient", "WireFrame", "command", "raw_connect", "ws_frame"]

PROTOCOL = "actioncable-v1-json"
CLOSED = (trio.BrokenResourceError, trio.ClosedResourceError)

Frame = dict[str, Any]
#: (opcode, payload, the frame's bytes as they came off the wire)
WireFrame = tuple[int, bytes, bytes]


def command(name: str, identifier: str, **data: Any) -> str:
    """An Action Cable command; ``data`` becomes its JSON-string ``data``."""
    cmd: dict[str, Any] = {"command": name, "identifier": identifier}
    if data:
        cmd["data"] = json.dumps(data)
    return json.dumps(cmd)


def ws_frame(
    payload: bytes,
    opcode: int = 0x1,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One RFC 6455 frame; every field can be set to something illegal."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + n.to_bytes(2)
    else:
        head += bytes([bit | 127]) + n.to_bytes(8)
    if not mask:
        return head + payload
    key = os.urandom(4)
    stream = int.from_bytes((key * (len(payload) // 4 + 1))[: len(payload)])
    return head + key + (int.from_bytes(payload) ^ stream).to_bytes(len(payload))


class RawClient:
    """RFC 6455 by hand on a trio stream (a TCP socket, or TLS over one)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.close_code: int | None = None
        # A reader answering a close frame may race another task's send.
        self._sending = trio.Lock()

    @classmethod
    async def open(cls, port: int, *, receive_buffer: int | None = None) -> RawClient:
        """A TCP connection, not yet upgraded."""
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                # Before connect(), so the advertised TCP window stays small.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return cls(trio.SocketStream(sock))

    @classmethod
    async def connect(
        cls, port: int, path: str = "/cable", *, welcome: bool = False, **options: Any
    ) -> RawClient:
        """A TCP connection upgraded to a WebSocket speaking Action Cable;
        ``welcome``: also read the welcome frame. ``trio.TooSlowError``
        after :data:`LOSS_BOUND` (a lost handshake, not a slow one)."""
        client = await cls.open(port, **options)
        try:
            with trio.fail_after(LOSS_BOUND):
                await client.upgrade(port, path)
                if welcome:
                    frame = await client.receive()
                    assert frame == {"type": "welcome"}, frame
        except BaseException:
            await client.aclose()
            raise
        return client

    async def upgrade(self, port: int, path: str = "/cable") -> None:
        """The handshake, which must be accepted with our subprotocol."""
        head = await self.handshake(port, path)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert f"sec-websocket-protocol: {PROTOCOL}".encode() in head.lower()

    async def handshake(
        self,
        port: int,
        path: str = "/cable",
        headers: str = "",
        protocol: str = PROTOCOL,
    ) -> bytes:
        """Send the upgrade request offering ``protocol`` (a comma-separated
        list; empty: none); return the response head (and, for a refusal,
        its body after a blank line)."""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else "")
            + f"{headers}\r\n"
        )
        await self.stream.send_all(request.encode())
        while b"\r\n\r\n" not in self.buffer:
            chunk = await self.stream.receive_some(4096)
            if not chunk:
                break
            self.buffer += chunk
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        return head

    async def read_to_eof(self) -> bytes:
        while chunk := await self.stream.receive_some(4096):
            self.buffer += chunk
        return bytes(self.buffer)

    async def send_bytes(self, data: bytes) -> None:
        """Write ``data`` as it is (frames or garbage)."""
        async with self._sending:
            await self.stream.send_all(data)

    async def send_raw(self, data: bytes) -> bool:
        """:meth:`send_bytes`; False if the server has already closed."""
        try:
            await self.send_bytes(data)
        except CLOSED:
            return False
        return True

    async def send_frame(
        self, opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True
    ) -> None:
        await self.send_bytes(ws_frame(payload, opcode, fin=fin, mask=masked))

    async def send_text(self, text: str) -> None:
        await self.send_frame(0x1, text.encode())

    async def receive_wire(self) -> WireFrame | None:
        """The next frame, data or control, with its exact bytes; None at
        EOF. Answers a close frame (once) and records its code."""
        buf = self.buffer
        while True:
            if len(buf) >= 2:
                assert buf[1] & 0x80 == 0, "server frames are never masked"
                assert buf[0] & 0x80, "the server does not fragment"
                assert buf[0] & 0x70 == 0, "no extension was negotiated"
                length, start = buf[1] & 0x7F, 2
                if length == 126:
                    length, start = int.from_bytes(buf[2:4], "big"), 4
                elif length == 127:
                    length, start = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) >= start + length:
                    wire = bytes(buf[: start + length])
                    del buf[: start + length]
                    opcode, payload = wire[0] & 0x0F, wire[start:]
                    if opcode == 0x8 and self.close_code is None:
                        self.close_code = int.from_bytes(payload[:2], "big")
                        with contextlib.suppress(*CLOSED):
                            await self.send_frame(0x8, payload[:2])
                    return opcode, payload, wire
            try:
                chunk = await self.stream.receive_some(65536)
            except CLOSED:  # reset by the server, or closed by us
                return None
            if not chunk:
                return None
            buf += chunk

    async def receive_raw(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next frame; None at EOF."""
        wire = await self.receive_wire()
        return None if wire is None else wire[:2]

    async def receive(self) -> Frame | None:
        """The next text frame (pings skipped), decoded; None once closed."""
        while (raw := await self.receive_raw()) is not None:
            opcode, payload = raw
            if opcode == 0x8:
                return None
            if opcode == 0x1:
                frame: Frame = json.loads(payload)
                if frame.get("type") != "ping":
                    return frame
        return None

    async def read_to_end(self) -> list[Frame]:
        """Every text frame (pings skipped) until the server closes."""
        frames = []
        while (frame := await self.receive()) is not None:
            frames.append(frame)
        return frames

    async def subscribe(self, identifier: str) -> list[Frame]:
        """Subscribe and wait for the confirmation; returns the frames
        before it (the welcome, what ``subscribed()`` transmitted)."""
        await self.send_text(command("subscribe", identifier))
        before: list[Frame] = []
        while (frame := await self.receive()) is not None:
            if frame.get("identifier") == identifier and "type" in frame:
                assert frame["type"] == "confirm_subscription", frame
                return before
            before.append(frame)
        raise AssertionError("closed before the confirmation")

    async def close_handshake(self, code: int = 1000) -> int | None:
        """Send a close frame and read until the server closes TCP; return
        the code of the close frame it answered with (None: no answer)."""
        await self.send_frame(0x8, code.to_bytes(2, "big"))
        self.close_code = code  # ours: the server's reply needs no answer
        answer = None
        while (raw := await self.receive_raw()) is not None:
            if raw[0] == 0x8:
                answer = int.from_bytes(raw[1][:2], "big")
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


async def raw_connect(stack: AsyncExitStack, port: int, **options: Any) -> RawClient:
    """:meth:`RawClient.connect`, closed when ``stack`` unwinds."""
    client = await RawClient.connect(port, **options)
    stack.push_async_callback(client.aclose)
    return client


async def silent_client_dropped(port: int) -> None:
    """An extended-protocol client that never answers a ping is dropped,
    told ``no_pong`` (with ``pong_timeout`` set on the cable)."""
    silent = await RawClient.open(port)
    try:
        head = await silent.handshake(port, protocol="actioncable-v1-ext-json")
        assert head.startswith(b"HTTP/1.1 101"), head
        with trio.fail_after(LOSS_BOUND):
            while (frame := await silent.receive()) is not None:
                if frame.get("type") == "disconnect":
                    break
        assert frame == {"type": "disconnect", "reason": "no_pong", "reconnect": True}
    finally:
        await silent.aclose()
