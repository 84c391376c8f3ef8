"""One WebSocket of the client, from TCP connect to close: the handshake,
the reader feeding :class:`~trio_cable.protocol.client.ClientProtocol`,
the subscribe re-sender beside it, and a bounded close."""

from __future__ import annotations

import logging
import time

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, WebSocketConnection

from .._errors import ClientError, ConnectionDenied, ConnectionUnauthorized
from .._util import single_error
from ..protocol.client import DisconnectRequested, InvalidFrame, Ping, Welcome
from ._connection import ClientConnection
from ._handshake import SessionEnded, Stream, handshake, map_rejection, open_stream
from ._options import ClientOptions

__all__ = ["run_session"]

log = logging.getLogger("trio_cable.client")


async def run_session(conn: ClientConnection) -> None:
    """One connection, from TCP connect to close. Returns when stopped;
    raises :class:`SessionEnded` to reconnect, :class:`ClientError` to
    give up. Its lifetime is the socket's, so it is long."""
    options = conn.options
    stream = await _connect(conn)
    if stream is None:
        return
    try:
        with single_error():
            # conn_nursery holds trio-websocket's reader task
            async with trio.open_nursery() as conn_nursery:
                ws: WebSocketConnection | None = None
                try:
                    with conn.interruptible():
                        ws = await handshake(
                            conn_nursery,
                            stream,
                            conn.target,
                            conn.headers,
                            options,
                            conn.protocol,
                        )
                        await _serve(conn, ws)
                finally:
                    if ws is not None:
                        await _close(ws, options)
                    conn_nursery.cancel_scope.cancel()
    except trio_websocket.ConnectionRejected as exc:
        raise map_rejection(exc, conn.url) from None
    except SessionEnded as ended:
        ended.welcomed = conn.ws is not None  # set by the welcome, until now
        conn.disconnected(ended.reason, reconnecting=options.reconnect)
        raise
    except ClientError:
        conn.disconnected("denied", reconnecting=False)
        raise
    finally:
        await trio.aclose_forcefully(stream)
    conn.disconnected("closed", reconnecting=False)


async def _connect(conn: ClientConnection) -> Stream | None:
    stream = None  # stays None if stopped
    with conn.interruptible():
        stream = await open_stream(conn.target, conn.options)
    return stream


async def _serve(conn: ClientConnection, ws: WebSocketConnection) -> None:
    """Read frames until the connection ends (by raising); the re-sender
    beside."""
    welcomed = False
    options = conn.options
    async with trio.open_nursery() as nursery:
        while True:
            timeout = options.stale_timeout if welcomed else options.connect_timeout
            with trio.move_on_after(timeout):
                try:
                    raw = await ws.get_message()
                    if _handle_frame(conn, ws, raw) and not welcomed:
                        welcomed = True
                        nursery.start_soon(conn.resubscribe, ws)
                    # What the frame calls for (extended: pong, history):
                    # sent before the next frame is read, so in order.
                    for frame in conn.protocol.take_outgoing():
                        await ws.send_message(frame)
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason else None
                    raise SessionEnded(f"closed ({code})") from None
                continue
            raise SessionEnded("stale" if welcomed else "no welcome")


def _handle_frame(
    conn: ClientConnection, ws: WebSocketConnection, raw: str | bytes
) -> bool:
    """Act on one frame; True if it was the welcome."""
    event = conn.protocol.receive_frame(raw, time.time())
    if event is None or isinstance(event, Ping):
        return False
    if isinstance(event, Welcome):
        conn.welcomed(ws, event)
        return True
    if isinstance(event, DisconnectRequested):
        raise _disconnect_error(event, conn.url)
    if isinstance(event, InvalidFrame):
        log.warning("ignoring a frame that is not JSON: %.80r", event.text)
    else:
        conn.dispatch(event)
    return False


def _disconnect_error(event: DisconnectRequested, url: str) -> Exception:
    if event.reconnect:
        return SessionEnded(event.reason)
    if event.reason == "unauthorized":
        return ConnectionUnauthorized(event.reason, f"{url}: unauthorized")
    return ConnectionDenied(event.reason, f"{url} disconnected us: {event.reason}")


async def _close(ws: WebSocketConnection, options: ClientOptions) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(options.close_timeout):
        await ws.aclose()
