"""The direct transport's upgrade parser (:mod:`trio_cable.transports.upgrade`),
with no event loop.

It replaced wsproto's ``H11Handshake``, so every request below is also
read by wsproto, and the two must agree: accepted with the same request
(target, host, headers, offers), or refused with the same status and
words. Where the parser is deliberately stricter than h11 (HTTP/1.0, a
body, obsolete line folding) the test says so.
"""

from __future__ import annotations

import pytest
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.events import Request as WSRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from trio_cable.transports.scope import upgrade_scope
from trio_cable.transports.upgrade import (
    MAX_HEAD,
    BadRequest,
    Upgrade,
    accept_response,
    check_request_line,
    head_end,
    parse_upgrade,
    refusal_response,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example
GOOD = (
    b"GET /cable?token=t HTTP/1.1\r\nHost: example.com:8080\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: actioncable-v1-json, actioncable-unsupported\r\n"
    b"Origin: http://example.com\r\nCookie: a=1; b=2\r\n\r\n"
)


def replaced(old: bytes, new: bytes) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new)


def wsproto_reads(head: bytes) -> WSRequest | tuple[int, str]:
    """What wsproto made of ``head``: its request, or (status, message)."""
    handshake = H11Handshake(ConnectionType.SERVER)
    try:
        handshake.receive_data(head)
        (event,) = handshake.events()
    except RemoteProtocolError as exc:
        hint = exc.event_hint
        assert hint is not None
        return hint.status_code, str(exc)  # type: ignore[attr-defined]
    assert isinstance(event, WSRequest)
    return event


def ours(head: bytes) -> Upgrade | tuple[int, str]:
    try:
        return parse_upgrade(head[: head_end(head)])
    except BadRequest as exc:
        return exc.status, exc.reason


SAME = [
    pytest.param(GOOD, id="valid"),
    pytest.param(replaced(b"GET", b"POST"), id="not GET"),
    pytest.param(
        replaced(b"Connection: Upgrade", b"Connection: close"), id="no upgrade"
    ),
    pytest.param(
        replaced(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
        id="connection list",
    ),
    pytest.param(replaced(b"Upgrade: websocket", b"Upgrade: h2c"), id="upgrade h2c"),
    pytest.param(replaced(b"Upgrade: websocket", b"Upgrade: WebSocket"), id="case"),
    pytest.param(replaced(b"Version: 13", b"Version: 8"), id="version 8 is 426"),
    pytest.param(replaced(b"Sec-WebSocket-Version: 13\r\n", b""), id="no version"),
    pytest.param(replaced(b"Sec-WebSocket-Key: " + KEY + b"\r\n", b""), id="no key"),
    pytest.param(replaced(b"Host: example.com:8080\r\n", b""), id="no host"),
    pytest.param(replaced(b"Sec-WebSocket-Protocol: ", b"X: "), id="no offer"),
    pytest.param(replaced(b"\r\n", b"\n"), id="LF line ends"),
    pytest.param(replaced(b"Cookie: a", b"Cookie:   a"), id="spaces around value"),
    pytest.param(replaced(b"Cookie: a=1; b=2", b"Cookie:"), id="empty value"),
    pytest.param(replaced(b"GET /cable?token=t ", b"GET /c b "), id="bad request line"),
    pytest.param(replaced(b"Cookie: ", b"Cookie "), id="no colon"),
    pytest.param(replaced(b"Cookie: ", b"Cookie : "), id="space before colon"),
    pytest.param(replaced(b"Cookie: a", b"Cookie: \x00a"), id="NUL in a value"),
    pytest.param(b"garbage\r\n\r\n", id="garbage"),
    pytest.param(
        replaced(b"Origin", b"Sec-WebSocket-Extensions: permessage-deflate\r\nOrigin"),
        id="extensions offered",
    ),
    pytest.param(
        replaced(b"Origin", b"Sec-WebSocket-Protocol: more\r\nOrigin"),
        id="offers over two headers",
    ),
]


@pytest.mark.parametrize("head", SAME)
def test_reads_requests_as_wsproto_did(head: bytes) -> None:
    theirs, mine = wsproto_reads(head), ours(head)
    if isinstance(theirs, tuple):
        assert isinstance(mine, tuple)
        status, message = theirs
        if message == "Bad HTTP message":
            # h11's refusal, which wsproto words alike for every cause
            # (ours may be more precise: "Missing header, 'Host'").
            assert mine[0] == 400
        else:
            assert mine == (status, message)
        return
    assert isinstance(mine, Upgrade)
    assert mine.target == theirs.target
    assert mine.host.decode() == theirs.host
    assert list(mine.subprotocols) == theirs.subprotocols
    assert list(mine.extensions) == theirs.extensions
    # h11 strips a value's surrounding whitespace too; wsproto keeps
    # lower-cased names, minus host and the offers.
    assert list(mine.headers) == list(theirs.extra_headers)


NO_BODY = "a WebSocket handshake has no body"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (replaced(b"HTTP/1.1", b"HTTP/1.0"), "a WebSocket handshake needs HTTP/1.1"),
        (replaced(b"a=1; b=2\r\n", b"a=1;\r\n b=2\r\n"), "Bad HTTP message"),
        (replaced(b"Origin", b"Content-Length: 2\r\nOrigin"), NO_BODY),
        (replaced(b"Origin", b"Transfer-Encoding: chunked\r\nOrigin"), NO_BODY),
    ],
    ids=["HTTP/1.0", "obsolete line folding", "a body", "chunked"],
)
def test_stricter_than_h11(head: bytes, why: str) -> None:
    """RFC 6455 asks for HTTP/1.1 and a GET has no body: refused, where h11
    read on (and whatever came next was lost)."""
    assert not isinstance(wsproto_reads(head), tuple)  # h11 took them
    assert ours(head) == (400, why)


def test_a_request_line_is_refused_before_the_rest_comes() -> None:
    check_request_line(b"GET /cable HT")  # not a whole line yet: no verdict
    check_request_line(b"GET /cable HTTP/1.1\r\nHo")
    with pytest.raises(BadRequest, match="Bad HTTP message"):
        check_request_line(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n")  # TLS


def test_the_head_ends_at_its_blank_line_and_is_bounded() -> None:
    assert head_end(GOOD[:-1]) == -1
    assert head_end(GOOD + b"\x81\x85") == len(GOOD)  # a frame right behind it
    assert head_end(b"x" * MAX_HEAD) == -1
    with pytest.raises(BadRequest) as refused:
        head_end(b"x" * (MAX_HEAD + 1))
    assert refused.value.status == 431
    padded = GOOD[:-2] + b"X-Pad: " + b"p" * (MAX_HEAD - len(GOOD) - 9) + b"\r\n\r\n"
    assert len(padded) == MAX_HEAD
    assert head_end(padded) == MAX_HEAD


def test_the_accept_answer_is_rfc_6455s_and_wsprotos() -> None:
    response = accept_response(KEY, "actioncable-v1-json")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    handshake = H11Handshake(ConnectionType.SERVER)
    handshake.receive_data(GOOD)
    list(handshake.events())
    theirs = handshake.send(AcceptConnection(subprotocol="actioncable-v1-json"))
    assert response == theirs
    assert b"Sec-WebSocket-Protocol" not in accept_response(KEY, None)


def test_refusals_say_why_and_close() -> None:
    response = refusal_response(426, "why", ((b"Sec-WebSocket-Version", b"13"),))
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 426 Upgrade Required"
    assert b"Sec-WebSocket-Version: 13" in lines
    assert b"connection: close" in lines
    assert b"content-length: 3" in lines
    assert body == b"why"


def test_the_scope_holds_the_host_first_and_no_offers() -> None:
    upgrade = parse_upgrade(GOOD[: head_end(GOOD)])
    scope = upgrade_scope(upgrade, ("127.0.0.1", 5000), secure=False)
    assert scope["path"] == "/cable"
    assert scope["query_string"] == b"token=t"
    assert scope["subprotocols"] == ["actioncable-v1-json", "actioncable-unsupported"]
    names = [name for name, _ in scope["headers"]]
    assert names[0] == b"host"
    assert b"sec-websocket-protocol" not in names
    assert dict(scope["headers"])[b"cookie"] == b"a=1; b=2"
