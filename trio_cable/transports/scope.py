"""The ASGI-style scope that describes a WebSocket handshake.

Hypercorn hands us one; every other transport builds one here, so one
:class:`~trio_cable.Request` class reads them all.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

if TYPE_CHECKING:
    from .upgrade import Upgrade

__all__ = ["latin1", "peer_address", "shared", "upgrade_scope", "websocket_scope"]

#: Every scope's ``asgi`` entry: the same (never changed) dict for all.
_ASGI: Final = {"version": "3.0"}

#: Header names and values most handshakes repeat, so that a scope kept for
#: a connection's lifetime holds these objects rather than copies of its
#: own (about half a KiB per connection): one of each, shared.
_SHARED: Final[dict[bytes, bytes]] = {
    text: text
    for text in (
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"cookie",
        b"user-agent",
        b"accept-encoding",
        b"accept-language",
        b"cache-control",
        b"pragma",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"websocket",
        b"Upgrade",
        b"upgrade",
        b"Upgrade, HTTP2-Settings",
        b"keep-alive, Upgrade",
        b"13",
        b"no-cache",
        b"permessage-deflate; client_max_window_bits",
        b"actioncable-v1-json, actioncable-unsupported",
        b"actioncable-v1-ext-json, actioncable-v1-json, actioncable-unsupported",
        b"actioncable-v1-json",
        b"gzip, deflate",
        b"gzip, deflate, br",
        b"gzip, deflate, br, zstd",
    )
}
#: Other short values seen again and again (a host, an origin, a browser's
#: user agent) join them, up to this many; beyond it, each keeps its own.
_SHARED_MAX: Final = 256
#: Shared (name, value) pairs, for the same reason.
_PAIRS: Final[dict[tuple[bytes, bytes], tuple[bytes, bytes]]] = {}
#: The headers whose values may be shared: never a cookie, a token or a
#: key, which must not outlive their connection in a process-wide table.
_SHAREABLE_VALUES: Final = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"user-agent",
        b"accept-encoding",
        b"accept-language",
        b"cache-control",
        b"pragma",
        b"sec-websocket-version",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
    }
)


def shared(text: bytes) -> bytes:
    """``text``, or an equal bytes object already kept for another scope."""
    found = _SHARED.get(text)
    if found is not None:
        return found
    if len(text) <= 128 and len(_SHARED) < _SHARED_MAX:
        _SHARED[text] = text
    return text


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
    scope = {
        "type": "websocket",
        "asgi": _ASGI,
        "scheme": "wss" if secure else "ws",
        "path": path,
        "raw_path": latin1(path),
        "query_string": latin1(query),
        "root_path": "",
        "headers": headers,
        "client": client,
        # Names every client repeats: one string each, not one per scope.
        "subprotocols": [sys.intern(name) for name in subprotocols],
    }
    # Optional in ASGI (None when missing): an eleventh key would double
    # the dict, kept for the connection's lifetime (464 bytes, not 272).
    if server is not None:
        scope["server"] = server
    return scope


def upgrade_scope(
    upgrade: Upgrade, client: tuple[str, int] | None, secure: bool
) -> dict[str, Any]:
    """The scope of an upgrade request the direct transport read."""
    # The host first, then the rest in order, as wsproto's requests had them.
    headers = (
        _header(b"host", upgrade.host),
        *(_header(name, value) for name, value in upgrade.headers),
    )
    return websocket_scope(
        upgrade.target,
        headers,
        client=client,
        subprotocols=upgrade.subprotocols,
        secure=secure,
    )


def _header(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A header of a scope, the pair itself shared where both halves are
    (a tuple is 56 bytes a connection)."""
    found = _PAIRS.get((name, value))  # most of a request's headers
    if found is not None:
        return found
    name = shared(name)
    if name not in _SHAREABLE_VALUES:
        return (name, value)
    pair = (name, shared(value))
    found = _PAIRS.get(pair)
    if found is not None:
        return found
    if len(_PAIRS) < _SHARED_MAX and pair[1] in _SHARED:
        _PAIRS[pair] = pair
    return pair


def peer_address(source: object) -> tuple[str, int] | None:
    """The client's address from a socket or a trio stream (None: not a
    TCP socket, or gone)."""
    if type(source) is not socket.socket:  # the direct transport's, mostly
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
            # Interned: most clients of a server share a few addresses (a
            # proxy's, a load balancer's), kept for each connection's life.
            return (sys.intern(str(address[0])), int(address[1]))
    return None
