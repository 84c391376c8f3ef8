"""Accepting trio-websocket connections on listeners of our own.

trio-websocket's own server answers every request itself, so a plain HTTP
``GET`` (stats, metrics: see :mod:`.plain_http`) would never reach us.
Here the listeners are served by our own accept loop
(:func:`~.accepting.accept_streams`, which backs off and logs once when
the process is out of file descriptors, where ``trio.serve_listeners``
retries every 0.1 s and logs each failure); when
there are HTTP routes, each request's head is read first, a plain ``GET``
of one of their paths is answered, and anything else is handed to
trio-websocket (:func:`trio_websocket.wrap_server_stream`) with the bytes
already read replayed first (:class:`ReplayStream`). Each connection then
lives as it does under trio-websocket's own server: a nursery for its
reader task, the close within ``disconnect_timeout``. The handshake is
read when the serving path asks for it (:class:`WebSocketHandshake`), so
that a socket still sending its request counts against the cable's
limits and its handshake timeout from the moment it is accepted.
trio-websocket reads through an :class:`~.gate.InputGate`, which holds
each client to the input limits of the direct transport.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Final

import trio
from trio_websocket import WebSocketRequest, wrap_server_stream

from .accepting import accept_streams
from .gate import InputGate
from .inbound import InputLimits
from .plain_http import HTTPRoutes, plain_get_response
from .trio_websocket import WebSocketHandshake

__all__ = ["ReplayStream", "read_request_head", "serve_trio_websocket"]

log = logging.getLogger("trio_cable.trio_websocket")

#: The most of a request's head read before it is handed on as it is
#: (h11, under trio-websocket, refuses longer heads itself).
MAX_HEAD: Final = 16 * 1024
#: The name of every connection's task (trio would format one per task).
_CONN_TASK: Final = "trio_cable.trio_websocket.connection"
#: What trio-websocket reads at a time.
_RECEIVE_BYTES: Final = 4 * 1024


class ReplayStream(trio.abc.Stream):
    """``transport_stream``, with ``head`` (read from it already) received
    first."""

    def __init__(self, transport_stream: trio.abc.Stream, head: bytes) -> None:
        self.transport_stream = transport_stream
        self._head = head

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        head = self._head
        if not head:
            return await self.transport_stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        size = len(head) if max_bytes is None else max_bytes
        self._head = head[size:]
        return head[:size]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self._head = b""
        await self.transport_stream.aclose()


async def read_request_head(stream: trio.abc.Stream) -> bytes | None:
    """Bytes from ``stream`` up to the end of an HTTP request's head (or
    :data:`MAX_HEAD` of them, or more if they came together); None if the
    peer left (or broke the TLS handshake) before its head was whole."""
    head = bytearray()
    while len(head) < MAX_HEAD:
        try:
            data = await stream.receive_some(_RECEIVE_BYTES)
        except trio.BrokenResourceError:
            return None
        if not data:
            return None
        # A new end of head can only start 3 bytes back into what we had.
        start = max(len(head) - 3, 0)
        head += data
        if head.find(b"\r\n\r\n", start) >= 0:
            break
    return bytes(head)


async def serve_trio_websocket(
    handle: Callable[[WebSocketHandshake], Awaitable[None]],
    listeners: list[trio.abc.Listener[Any]],
    *,
    secure: bool,
    http: HTTPRoutes | None = None,
    max_message_size: int,
    disconnect_timeout: float,
    limits: InputLimits | None = None,
    count: Callable[[str], None] | None = None,
    refuse: Callable[[], bool] | None = None,
    task_status: trio.TaskStatus[list[trio.abc.Listener[Any]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> None:
    """Serve ``listeners`` with trio-websocket, each handshake handed to
    ``handle`` (the serving path); plain ``GET``\\ s answered from
    ``http``. Each client is read within ``limits`` (see
    :class:`~.gate.InputGate`, which tells ``count`` what it refuses).
    A new socket is closed at once, unread, if ``refuse()`` says so (too
    many handshakes under way). Reports the listeners through
    ``task_status``."""
    input_limits = limits or InputLimits()

    async def serve_stream(stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            handshake = WebSocketHandshake(
                partial(_open_request, stream, nursery),
                secure=secure,
                stream=stream,
            )
            try:
                await handle(handshake)
            finally:
                # Each closes the stream even if cancelled (then abruptly).
                with trio.move_on_after(disconnect_timeout):
                    if handshake.connection is not None:
                        await handshake.connection.aclose()
                    nursery.cancel_scope.cancel()  # the reader task
                    await stream.aclose()

    async def _open_request(
        stream: trio.abc.Stream, nursery: trio.Nursery
    ) -> tuple[WebSocketRequest, InputGate] | None:
        ws_stream = stream
        if http is not None:
            head = await read_request_head(stream)
            if head is None:
                return None
            response = plain_get_response(head, http)
            if response is not None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(response)
                return None
            ws_stream = ReplayStream(stream, head)
        gate = InputGate(
            ws_stream,
            max_message_size=max_message_size,
            limits=input_limits,
            close_timeout=disconnect_timeout,
            count=count,
            peer=stream,
        )
        request = await wrap_server_stream(
            nursery, gate, max_message_size=max_message_size
        )
        return request, gate

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(
                partial(
                    accept_streams,
                    listener,
                    serve_stream,
                    nursery,
                    log=log,
                    refuse=refuse,
                    name=_CONN_TASK,
                )
            )
        task_status.started(listeners)
