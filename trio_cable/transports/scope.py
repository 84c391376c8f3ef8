"""The ASGI-style scope that describes a WebSocket handshake.

Hypercorn hands us one; every other transport builds one here, so one
:class:`~trio_cable.Request` class reads them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from wsproto.events import Request as WSRequest

__all__ = ["latin1", "peer_address", "websocket_scope", "wsproto_scope"]


def latin1(text: bytes | str) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1", "replace")


def websocket_scope(
    target: str,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    client: tuple[str, int] | None,
    subprotocols: Sequence[str],
    secure: bool = False,
    server: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """A WebSocket scope for a request to ``target`` (path and query)."""
    path, _, query = target.partition("?")
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss" if secure else "ws",
        "path": path,
        "raw_path": latin1(path),
        "query_string": latin1(query),
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
        "subprotocols": list(subprotocols),
    }


def wsproto_scope(
    event: WSRequest, client: tuple[str, int] | None, secure: bool
) -> dict[str, Any]:
    """The scope of a handshake wsproto parsed (the direct transport's)."""
    # wsproto keeps Host out of the extra headers; put it back
    headers = [(b"host", latin1(event.host))]
    headers += [(latin1(name), latin1(value)) for name, value in event.extra_headers]
    return websocket_scope(
        event.target,
        headers,
        client=client,
        subprotocols=event.subprotocols,
        secure=secure,
    )


def peer_address(source: object) -> tuple[str, int] | None:
    """The client's address from a socket or a trio stream (None: not a
    TCP socket, or gone)."""
    while isinstance(source, trio.SSLStream):
        source = source.transport_stream
    if isinstance(source, trio.SocketStream):
        source = source.socket
    getpeername = getattr(source, "getpeername", None)
    if getpeername is None:
        return None
    with contextlib.suppress(OSError):
        address = getpeername()
        if isinstance(address, tuple):
            return (str(address[0]), int(address[1]))
    return None
