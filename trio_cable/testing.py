"""Test a cable with no network and no server.

:func:`cable_test_client` connects an in-memory client to a cable (the
same connection code every real transport runs), and
:func:`capture_broadcasts` records what was broadcast to a stream::

    async def test_chat():
        async with cable_test_client(cable) as ws:
            confirm = await ws.subscribe("ChatChannel", room="general")
            assert confirm["type"] == "confirm_subscription"
            await ws.perform("ChatChannel", "speak", {"message": "hi"}, room="general")
            assert (await ws.receive())["message"]["message"] == "hi"

:func:`guide_test_client` is the same for a client speaking the reference
Channels guide's frames (``proper-channels-v1-json``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import urlencode

import trio

from ._cable import Cable
from ._connection import Connection
from ._errors import ConnectionRejected
from ._request import Request
from ._serving import serve_connection
from ._util import single_error
from .protocol.guide import GUIDE_SUBPROTOCOL, guide_identifier
from .transports.memory import MemoryHandshake, MemoryTransport
from .transports.scope import websocket_scope

__all__ = [
    "GUIDE_SUBPROTOCOL",
    "GuideTestClient",
    "MemoryTransport",
    "TestClient",
    "cable_test_client",
    "capture_broadcasts",
    "guide_test_client",
    "identifier_for",
]

Frame = dict[str, Any]


def identifier_for(channel: str, **params: Any) -> str:
    """The identifier string the official client sends: ``channel`` first,
    then params in the order given."""
    return json.dumps({"channel": channel, **params}, separators=(",", ":"))


class TestClient:
    """The client end of an in-memory connection (see :func:`cable_test_client`).

    Frames are decoded JSON objects. Pings are skipped unless asked for.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        connection: Connection,
        to_server: trio.MemorySendChannel[str | bytes],
        from_server: trio.MemoryReceiveChannel[str],
    ) -> None:
        #: The server-side :class:`~trio_cable.Connection` (for assertions).
        self.connection = connection
        self._to_server = to_server
        self._from_server = from_server
        self._pending: list[Frame] = []
        self._refs = 0
        self.closed = False
        #: The ``welcome`` frame (with ``sid`` in the extended protocol).
        self.welcome: Frame = {}

    async def send_raw(self, text: str | bytes) -> None:
        """Send one frame as is (for testing bad input)."""
        await self._to_server.send(text)

    async def send_command(
        self, command: str, identifier: str, data: Any = None
    ) -> None:
        frame: dict[str, Any] = {"command": command, "identifier": identifier}
        if data is not None:
            frame["data"] = json.dumps(data)
        await self.send_raw(json.dumps(frame))

    async def subscribe(self, channel: str, **params: Any) -> Frame:
        """Subscribe; return the ``confirm_subscription`` or
        ``reject_subscription`` frame (other frames stay queued)."""
        identifier = identifier_for(channel, **params)
        await self.send_command("subscribe", identifier)
        return await self.receive_matching(
            lambda f: (
                f.get("identifier") == identifier
                and f.get("type") in ("confirm_subscription", "reject_subscription")
            )
        )

    async def unsubscribe(self, channel: str, **params: Any) -> None:
        await self.send_command("unsubscribe", identifier_for(channel, **params))

    async def perform(
        self,
        channel: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        """Perform ``action`` on the subscription ``channel`` + ``params``."""
        payload = {**(data or {}), "action": action}
        await self.send_command("message", identifier_for(channel, **params), payload)

    async def call(
        self,
        channel: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Frame:
        """Call ``action`` (a ``message`` with a ``ref``) and return its
        ``reply`` frame: ``result``, or ``error`` with ``reason`` and
        ``message``. Frames before the reply stay queued for
        :meth:`receive`."""
        self._refs += 1
        ref = self._refs
        identifier = identifier_for(channel, **params)
        frame = {
            "command": "message",
            "identifier": identifier,
            "data": json.dumps({**(data or {}), "action": action}),
            "ref": ref,
        }
        await self.send_raw(json.dumps(frame))
        return await self.receive_matching(
            lambda f: f.get("type") == "reply" and f.get("ref") == ref
        )

    async def receive(self, *, pings: bool = False) -> Frame:
        """The next frame (skipping pings unless ``pings``).

        Raises:
            trio.EndOfChannel: the server closed the connection.
        """
        for i, frame in enumerate(self._pending):
            if pings or frame.get("type") != "ping":
                return self._pending.pop(i)
        while True:
            frame = await self._next()
            if pings or frame.get("type") != "ping":
                return frame

    async def receive_matching(self, match: Any) -> Frame:
        """The first frame for which ``match(frame)`` is true; frames before
        it stay queued for :meth:`receive`."""
        for i, frame in enumerate(self._pending):
            if match(frame):
                return self._pending.pop(i)
        while True:
            frame = await self._next()
            if match(frame):
                return frame
            self._pending.append(frame)

    async def _next(self) -> Frame:
        try:
            text = await self._from_server.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self.closed = True
            raise trio.EndOfChannel("the server closed the connection") from None
        frame: Frame = json.loads(text)
        return frame

    async def close(self) -> None:
        """Close the socket from the client's side."""
        await self._to_server.aclose()


@asynccontextmanager
async def cable_test_client(
    cable: Cable,
    *,
    path: str = "/cable",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    buffer: int = 1000,
    subprotocols: Sequence[str] = ("actioncable-v1-json", "actioncable-unsupported"),
) -> AsyncIterator[TestClient]:
    """Connect an in-memory client to ``cable``; runs the cable if needed.

    ``subprotocols`` is what the client offers, as the official client's by
    default; offer ``["actioncable-v1-ext-json"]`` to speak AnyCable's
    extended protocol (session ids, history; see docs/reliability.md).

    ``headers``, ``cookies`` and ``query`` make up the handshake request the
    connect hook sees. ``buffer`` bounds frames the client has not read
    yet (beyond it the server's writer waits, as on a full socket).

    Raises:
        ConnectionRejected: the connect hook refused the connection
            (``reason`` and ``reconnect`` are those of the disconnect frame).

    Leaving the block closes the client socket and waits until the server
    side has finished (every ``unsubscribed()`` ran).
    """
    request = _request(path, headers, cookies, query, list(subprotocols))
    async with _memory_connection(cable, request, buffer) as (conn, to, from_):
        client = TestClient(conn, to, from_)
        first = await client.receive()
        if first.get("type") == "disconnect":
            raise _rejected(first)
        client.welcome = first
        try:
            yield client
        finally:
            await client.close()


def _rejected(frame: Frame) -> ConnectionRejected:
    return ConnectionRejected(
        f"connection refused: {frame.get('reason')}",
        reason=frame.get("reason"),
        reconnect=bool(frame.get("reconnect")),
    )


def _request(
    path: str,
    headers: Mapping[str, str] | None,
    cookies: Mapping[str, str] | None,
    query: Mapping[str, str] | None,
    subprotocols: list[str],
) -> Request:
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookies:
        jar: SimpleCookie = SimpleCookie()
        for name, value in cookies.items():
            jar[name] = value
        cookie = "; ".join(f"{m.key}={m.coded_value}" for m in jar.values())
        raw_headers.append((b"cookie", cookie.encode()))
    if not any(name == b"host" for name, _ in raw_headers):
        raw_headers.insert(0, (b"host", b"testserver"))
    target = path + (f"?{urlencode(query)}" if query else "")
    scope = websocket_scope(
        target,
        raw_headers,
        client=("127.0.0.1", 0),
        subprotocols=subprotocols,
        server=("testserver", 80),
    )
    return Request(scope)


@asynccontextmanager
async def _memory_connection(
    cable: Cable, request: Request, buffer: int
) -> AsyncIterator[
    tuple[
        Connection,
        trio.MemorySendChannel[str | bytes],
        trio.MemoryReceiveChannel[str],
    ]
]:
    """A server connection over memory channels, served until the block
    ends (the cable runs meanwhile if it did not already)."""
    to_server, server_in = trio.open_memory_channel[str | bytes](buffer)
    server_out, from_server = trio.open_memory_channel[str](buffer)
    handshake = MemoryHandshake(request, server_out, server_in)
    with single_error():
        async with AsyncExitStack() as stack:
            if not cable.is_running:
                await stack.enter_async_context(cable.running())
            async with trio.open_nursery() as nursery:
                connection = await nursery.start(serve_connection, cable, handshake)
                yield connection, to_server, from_server


class GuideTestClient:
    """An in-memory client speaking the reference Channels guide's frames
    (``proper-channels-v1-json``; see :func:`guide_test_client`).

    Frames are decoded JSON objects: ``{"type": "message", "channel": ...,
    "params": ..., "data": ...}`` and the like.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        connection: Connection,
        to_server: trio.MemorySendChannel[str | bytes],
        from_server: trio.MemoryReceiveChannel[str],
    ) -> None:
        #: The server-side :class:`~trio_cable.Connection` (for assertions).
        self.connection = connection
        self._frames = TestClient(connection, to_server, from_server)
        self._refs = 0

    @property
    def closed(self) -> bool:
        return self._frames.closed

    async def send_raw(self, text: str | bytes) -> None:
        """Send one frame as is (for testing bad input)."""
        await self._frames.send_raw(text)

    async def send_command(
        self, command: str, channel: str, params: Mapping[str, Any], **fields: Any
    ) -> None:
        frame = {"command": command, "channel": channel, "params": dict(params)}
        await self.send_raw(json.dumps({**frame, **fields}))

    async def subscribe(self, channel: str, **params: Any) -> Frame:
        """Subscribe; return the ``confirm_subscription`` or
        ``reject_subscription`` frame (other frames stay queued).

        Raises:
            ConnectionRejected: the connect hook refused the connection.
        """
        await self.send_command("subscribe", channel, params)
        name = guide_identifier(channel, params)

        def answer(frame: Frame) -> bool:
            if frame.get("type") == "disconnect":
                raise _rejected(frame)
            return frame.get("type") in _ANSWERS and _name(frame) == name

        return await self._frames.receive_matching(answer)

    async def unsubscribe(self, channel: str, **params: Any) -> None:
        await self.send_command("unsubscribe", channel, params)

    async def send_action(
        self,
        channel: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        """Perform ``action`` with ``data`` on ``channel`` + ``params``."""
        await self.send_command(
            "message", channel, params, action=action, data=dict(data or {})
        )

    async def call(
        self,
        channel: str,
        action: str,
        data: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Frame:
        """Call ``action`` and return its ``reply`` frame (``result``, or
        ``error``); frames before it stay queued for :meth:`receive`."""
        self._refs += 1
        ref = self._refs
        await self.send_command(
            "message", channel, params, action=action, data=dict(data or {}), ref=ref
        )
        return await self._frames.receive_matching(
            lambda f: f.get("type") == "reply" and f.get("ref") == ref
        )

    async def receive(self) -> Frame:
        """The next frame.

        Raises:
            trio.EndOfChannel: the server closed the connection.
        """
        return await self._frames.receive()

    async def receive_matching(self, match: Any) -> Frame:
        """The first frame for which ``match(frame)`` is true; frames before
        it stay queued for :meth:`receive`."""
        return await self._frames.receive_matching(match)

    async def close(self) -> None:
        """Close the socket from the client's side."""
        await self._frames.close()


_ANSWERS: Final = ("confirm_subscription", "reject_subscription")


def _name(frame: Frame) -> str | None:
    channel, params = frame.get("channel"), frame.get("params")
    if not isinstance(channel, str) or not isinstance(params, dict):
        return None
    return guide_identifier(channel, params)


@asynccontextmanager
async def guide_test_client(
    cable: Cable,
    *,
    path: str = "/cable",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    buffer: int = 1000,
) -> AsyncIterator[GuideTestClient]:
    """Like :func:`cable_test_client`, for a client speaking the reference
    Channels guide's frames (the ``proper-channels-v1-json`` subprotocol):
    ``subscribe("ChatChannel", room=...)``, ``send_action(...)``,
    ``receive()``, as in that guide's tests::

        async with guide_test_client(cable) as ws:
            confirm = await ws.subscribe("ChatChannel", room="general")
            assert confirm["type"] == "confirm_subscription"
            await ws.send_action(
                "ChatChannel", "speak", {"message": "hi"}, room="general"
            )
            assert (await ws.receive())["data"]["message"] == "hi"

    The dialect has no welcome frame, so a connection the connect hook
    refuses shows when the client next subscribes (``ConnectionRejected``)
    or receives (the ``disconnect`` frame). Leaving the block closes the
    socket and waits until the server side has finished.
    """
    request = _request(path, headers, cookies, query, [GUIDE_SUBPROTOCOL])
    async with _memory_connection(cable, request, buffer) as (conn, to, from_):
        client = GuideTestClient(conn, to, from_)
        try:
            yield client
        finally:
            await client.close()


@contextmanager
def capture_broadcasts(cable: Cable, stream: str) -> Iterator[list[Any]]:
    """Record the data of every broadcast to ``stream`` inside the block.

    Captures broadcasts from anywhere the cable hears them: channels,
    other tasks, threads (and other processes, with a cross-process cable).
    """
    captured: list[Any] = []

    class _Capture:
        identifier = ""

        def deliver(
            self, payload: str, frames: dict[str, str], position: object = None
        ) -> None:
            captured.append(json.loads(payload))

    capture = _Capture()
    cable.stream_added(stream, capture)
    try:
        yield captured
    finally:
        cable.stream_removed(stream, capture)
