"""Plain HTTP ``GET`` answers on a WebSocket port (stats, metrics).

The direct transport hands a request that is not an upgrade to
:func:`plain_get_response` (wsproto has refused it already), and so does
the trio-websocket server (:mod:`.trio_websocket_server`) before
trio-websocket sees the request: the answer is written by hand, and the
connection closes after it.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["HTTPRoutes", "plain_get_response"]

#: A plain HTTP GET the direct server answers (stats, metrics): path ->
#: (content type, body), or None for "not mine" (then a 400/426 as usual).
HTTPRoutes = Callable[[str], "tuple[str, bytes] | None"]


def plain_get_response(head: bytes, http: HTTPRoutes) -> bytes | None:
    """The response to the request whose first bytes are ``head``, or None
    if it is not a ``GET``/``HEAD`` of a path ``http`` answers."""
    method, _, rest = head.partition(b" ")
    target = rest.partition(b" ")[0].partition(b"?")[0]
    if method not in (b"GET", b"HEAD"):
        return None
    answer = http(target.decode("latin-1"))
    if answer is None:
        return None
    content_type, body = answer
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
        b"cache-control: no-store\r\nconnection: close\r\n\r\n"
    ) % (content_type.encode(), len(body))
    return response + (b"" if method == b"HEAD" else body)
