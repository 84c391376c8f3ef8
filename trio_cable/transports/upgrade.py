"""The WebSocket upgrade request and its answers, sans-I/O (RFC 6455 § 4.2).

The direct transport reads each handshake with this instead of wsproto's
``H11Handshake`` (h11 underneath): a connect is mostly its handshake, and
a general HTTP/1.1 machine cost more than the rest of the connect
together (docs/benchmarks.md, issue 17). What it reads is one request
head; what it checks is what wsproto checked, in the same order and with
the same messages, and more of HTTP's own grammar (h11's rules for the
request line and header fields): anything else is a :class:`BadRequest`
with the status to answer, so a bad request is refused in words and
nothing else is lost.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

__all__ = [
    "MAX_HEAD",
    "BadRequest",
    "Upgrade",
    "accept_response",
    "head_end",
    "parse_upgrade",
    "refusal_response",
]

#: The longest request head read (h11's default limit, which the direct
#: transport had before): past it, 431.
MAX_HEAD: Final = 16 * 1024
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The blank line that ends a head (lone LF line ends accepted, as h11 does).
_BLANK: Final = (b"\r\n", b"\n")
# RFC 9110 tokens and field values, and RFC 9112's request line, as h11
# spells them.
_TOKEN: Final = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE: Final = re.compile(
    rb"(?P<method>" + _TOKEN + rb") (?P<target>[\x21-\x7e]+) HTTP/(?P<version>\d\.\d)"
)
# A field value: h11's (visible characters and obs-text, separated by
# spaces and tabs, whitespace around), in a class with no backtracking.
_VALUE: Final = rb"[^\x00\n\r\f\v]*"
#: Every header line read and checked in one pass: a valid line matches
#: the first branch (name, value); anything else up to the next line end
#: matches the last (so each match starts where the one before ended),
#: which only the blank line after the headers may.
_FIELDS: Final = re.compile(rb"(" + _TOKEN + rb"):(" + _VALUE + rb")\r?\n|([^\n]*\n?)")
#: Headers read into the request.
_READ: Final = frozenset(
    {
        b"host",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"connection",
        b"upgrade",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"transfer-encoding",
        b"content-length",
    }
)
#: Headers the scope does not keep (as wsproto left them out): the host
#: comes first under its own name, the offers are read into the request.
_NOT_KEPT: Final = frozenset(
    {b"host", b"sec-websocket-protocol", b"sec-websocket-extensions"}
)


class BadRequest(Exception):
    """A request to refuse with HTTP ``status``; ``reason`` says why (the
    response's body) and ``headers`` go with it."""

    def __init__(
        self,
        reason: str,
        status: int = 400,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid upgrade request."""

    method: bytes
    #: The request target: path and query, as sent.
    target: str
    host: bytes
    #: Every other header but the offers, names in lower case, in order.
    headers: tuple[tuple[bytes, bytes], ...]
    #: The subprotocols offered, in order.
    subprotocols: tuple[str, ...]
    #: The extensions offered (none is ever accepted).
    extensions: tuple[str, ...]
    key: bytes


def head_end(data: bytes) -> int:
    """Where the head in ``data`` ends (the first byte after its blank
    line), or -1 if it has not ended yet.

    Raises:
        BadRequest: 431 if the head is longer than :data:`MAX_HEAD`.
    """
    # The first LF followed by CRLF or by LF (two finds: quicker than a
    # regular expression's search over the head).
    crlf = data.find(b"\n\r\n", 0, MAX_HEAD + 2)
    lf = data.find(b"\n\n", 0, MAX_HEAD + 2 if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 2
    if crlf >= 0:
        return crlf + 3
    if len(data) > MAX_HEAD:
        raise BadRequest("request head too large", 431)
    return -1


def check_request_line(data: bytes) -> None:
    """Refuse a request whose first line (once whole) is not HTTP/1.1's
    ``METHOD target HTTP/1.1``, without waiting for the rest of it."""
    line, newline, _ = data.partition(b"\n")
    if newline:
        _request_line(line.removesuffix(b"\r"))


def _request_line(line: bytes) -> tuple[bytes, bytes]:
    found = _REQUEST_LINE.fullmatch(line)
    if found is None:
        raise BadRequest("Bad HTTP message")
    if found["version"] != b"1.1":
        raise BadRequest("a WebSocket handshake needs HTTP/1.1")
    return found["method"], found["target"]


def parse_upgrade(head: bytes) -> Upgrade:
    """The upgrade request whose head (up to its blank line) is ``head``.

    Raises:
        BadRequest: it is not HTTP/1.1 as h11 reads it, or not a WebSocket
            upgrade as wsproto reads it (426 with the version we speak for
            another WebSocket version).
    """
    first, _, fields = head.partition(b"\n")
    method, target = _request_line(first.removesuffix(b"\r"))
    connection: list[bytes] = []
    extensions: list[str] = []
    subprotocols: list[str] = []
    headers: list[tuple[bytes, bytes]] = []
    host = key = version = None
    upgrade = b""
    lines = _FIELDS.findall(fields)
    # The blank line, then the empty match at the end of the head.
    if len(lines) < 2 or lines.pop()[2] or lines.pop()[2] not in _BLANK:
        raise BadRequest("Bad HTTP message")
    for raw_name, raw_value, bad in lines:
        if bad:
            # Obsolete line folding is refused too (RFC 9112 § 5.2 allows it).
            raise BadRequest("Bad HTTP message")
        name, value = raw_name.lower(), raw_value.strip(b" \t")
        if name not in _NOT_KEPT:
            headers.append((name, value))
        if name not in _READ:
            continue
        if name == b"host":
            host = value
        elif name == b"sec-websocket-protocol":
            subprotocols += _tokens(value)
        elif name == b"sec-websocket-extensions":
            extensions += _tokens(value)
        elif name == b"connection":
            connection += value.lower().split(b",")
        elif name == b"upgrade":
            upgrade = value
        elif name == b"sec-websocket-key":
            key = value
        elif name == b"sec-websocket-version":
            version = value
        elif name == b"transfer-encoding" or (
            name == b"content-length" and value != b"0"
        ):
            raise BadRequest("a WebSocket handshake has no body")
    # wsproto's checks, in its order and words.
    if method != b"GET":
        raise BadRequest("Request method must be GET")
    if not any(token.strip() == b"upgrade" for token in connection):
        raise BadRequest("Missing header, 'Connection: Upgrade'")
    if version != b"13":
        raise BadRequest(
            "Missing header, 'Sec-WebSocket-Version'",
            426 if version else 400,
            ((b"Sec-WebSocket-Version", b"13"),),
        )
    if key is None:
        raise BadRequest("Missing header, 'Sec-WebSocket-Key'")
    if upgrade.lower() != b"websocket":
        raise BadRequest("Missing header, 'Upgrade: websocket'")
    if host is None:
        raise BadRequest("Missing header, 'Host'")
    return Upgrade(
        method,
        target.decode("ascii"),
        host,
        tuple(headers),
        tuple(subprotocols),
        tuple(extensions),
        key,
    )


def _tokens(value: bytes) -> list[str]:
    """A comma-separated list header's items (the empty ones left out)."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("Bad HTTP message") from None
    return [item for piece in text.split(",") if (item := piece.strip())]


def accept_response(key: bytes, subprotocol: str | None) -> bytes:
    """The ``101 Switching Protocols`` answer to the request with ``key``,
    selecting ``subprotocol`` (None: none)."""
    token = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    protocol = (
        b""
        if subprotocol is None
        else b"Sec-WebSocket-Protocol: %s\r\n" % (subprotocol.encode("ascii"))
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
    ) % (token, protocol)


def refusal_response(
    status: int, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """A refusal: ``status`` with ``reason`` as a plain-text body, and the
    connection closed after it."""
    body = reason.encode()
    try:
        phrase = HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    extra = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n%s\r\n%s"
    ) % (status, phrase, len(body), extra, body)
