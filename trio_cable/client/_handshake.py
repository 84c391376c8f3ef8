"""Opening one WebSocket to a cable: the URL, the handshake headers, TCP
(and TLS), the HTTP upgrade and the subprotocol check. Foreign errors
(OSError, trio-websocket's) are mapped to the client's here."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import WebSocketConnection

from .._errors import ConnectionDenied, ConnectionUnauthorized
from ..protocol.client import ClientProtocol
from ._options import ClientOptions, HeaderArg

__all__ = [
    "SessionEnded",
    "Stream",
    "Target",
    "handshake",
    "header_list",
    "map_rejection",
    "open_stream",
]

Stream = trio.SocketStream | trio.SSLStream[trio.SocketStream]

#: Presents the session id of the last connection (extended protocol).
RESTORE_SID = b"X-AnyCable-Restore-Sid"


class SessionEnded(Exception):
    """A connection ended in a way the client may recover from."""

    def __init__(self, reason: str, *, welcomed: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.welcomed = welcomed


@dataclass(frozen=True)
class Target:
    """Where a ``ws://`` or ``wss://`` URL points."""

    url: str
    host: str
    port: int
    resource: str
    host_header: str
    origin: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
        tls = parts.scheme == "wss"
        port = parts.port or (443 if tls else 80)
        host_header = parts.netloc.rpartition("@")[2]
        resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        origin = f"{'https' if tls else 'http'}://{host_header}"
        return cls(url, parts.hostname, port, resource, host_header, origin, tls)


def header_list(
    headers: HeaderArg, cookies: Mapping[str, str] | None, origin: str
) -> list[tuple[bytes, bytes]]:
    pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
    if cookies:
        pairs.append(("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    if not any(name.lower() == "origin" for name, _ in pairs):
        # Rails refuses a handshake whose Origin is not allowed; a missing
        # one never is. Say what a page served by the same host would.
        pairs.append(("Origin", origin))
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


async def open_stream(target: Target, options: ClientOptions) -> Stream:
    """TCP (and TLS) to ``target`` within ``connect_timeout``;
    :class:`SessionEnded` if that fails."""
    try:
        with trio.fail_after(options.connect_timeout):
            if target.tls:
                return await trio.open_ssl_over_tcp_stream(
                    target.host,
                    target.port,
                    ssl_context=options.ssl_context or ssl.create_default_context(),
                    https_compatible=True,
                )
            return await trio.open_tcp_stream(target.host, target.port)
    except (OSError, trio.TooSlowError) as exc:
        raise SessionEnded(_describe(exc)) from None


async def handshake(
    nursery: trio.Nursery,
    stream: Stream,
    target: Target,
    headers: list[tuple[bytes, bytes]],
    options: ClientOptions,
    protocol: ClientProtocol,
) -> WebSocketConnection:
    """The HTTP upgrade over ``stream``, offering ``protocol``'s
    subprotocols and presenting its session id (to resume the session);
    trio-websocket's reader task runs in ``nursery``. A refused upgrade
    surfaces from ``nursery`` as trio-websocket's ``ConnectionRejected``
    (see :func:`map_rejection`).

    Raises:
        SessionEnded: no answer within ``connect_timeout``.
        ConnectionDenied: the server selected no Action Cable subprotocol.
    """
    if protocol.extended and protocol.sid is not None:
        # AnyCable's header (its `sid` query parameter would do too).
        headers = [*headers, (RESTORE_SID, protocol.sid.encode("latin-1"))]
    try:
        with trio.fail_after(options.connect_timeout):
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                target.host_header,
                target.resource,
                subprotocols=list(protocol.offered),
                extra_headers=headers,
                max_message_size=options.max_message_size,
            )
    except trio.TooSlowError:
        raise SessionEnded("handshake timed out") from None
    if not protocol.opened(ws.subprotocol):
        # What the official client does: it is not an Action Cable server.
        raise ConnectionDenied(
            "unsupported_protocol",
            f"{target.url} selected no Action Cable subprotocol",
        )
    return ws


def map_rejection(
    exc: trio_websocket.ConnectionRejected, url: str
) -> ConnectionDenied | SessionEnded:
    """What an HTTP answer to the upgrade means: 4xx says do not come back
    (401/403: unauthorized), anything else may pass."""
    status = exc.status_code or 0
    if status in (401, 403):
        return ConnectionUnauthorized(
            "unauthorized", f"HTTP {status} from {url}", status=status
        )
    if 400 <= status < 500:
        return ConnectionDenied(
            f"http_{status}", f"HTTP {status} from {url}", status=status
        )
    return SessionEnded(f"HTTP {status}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "connect timed out"
    # trio's "all attempts to connect failed" hides the why in its cause
    cause = exc.__cause__
    while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
