"""The direct transport's handshake: the client's HTTP upgrade request,
read on a :class:`~trio_cable.transports.direct.DirectTransport` (with
:mod:`.upgrade`, no HTTP library), refused or accepted (and a plain
``GET`` answered, see :mod:`.plain_http`)."""

from __future__ import annotations

import trio

from .._request import Request
from .direct import DirectTransport
from .handshake_timeouts import Due
from .plain_http import HTTPRoutes, plain_get_response
from .scope import upgrade_scope
from .upgrade import (
    BadRequest,
    Upgrade,
    accept_response,
    check_request_line,
    head_end,
    parse_upgrade,
    refusal_response,
)

__all__ = ["DirectHandshake"]


class DirectHandshake:
    """The handshake on a :class:`DirectTransport`."""

    __slots__ = (
        "_due",
        "_http",
        "_peer_address",
        "_rest",
        "_secure",
        "_upgrade",
        "transport",
    )

    def __init__(
        self,
        transport: DirectTransport,
        *,
        secure: bool,
        http: HTTPRoutes | None = None,
        peer: tuple[str, int] | None = None,
        due: Due | None = None,
    ) -> None:
        self.transport = transport
        # The set of its handshake-timeout tick (the server's task times it).
        self._due = due
        # The client's address as accept() gave it (else asked of the socket).
        self._peer_address = peer
        self._secure = secure
        self._http = http
        self._upgrade: Upgrade | None = None
        self._rest = b""  # what the client sent after its request head

    async def request(self) -> Request | None:
        """The client's upgrade request; None if it left or sent nonsense
        (which is answered here: 400, 426 for another WebSocket version,
        431 for a head over 16 KiB), or sent a plain GET that ``http``
        answered."""
        transport = self.transport
        head = b""  # kept only until the request is whole
        while True:
            # The connection's task starts here: its first read needs no
            # checkpoint of its own (with deferred accepts, the request is
            # usually there already).
            data = await transport.recv_raw(fresh=not head)
            if not data:
                return None
            head += data
            try:
                check_request_line(head)  # refused before the rest comes
                end = head_end(head)
                if end < 0:
                    continue
                upgrade = parse_upgrade(head[:end])
            except BadRequest as exc:
                if not await self._plain_get(head):
                    await self.refuse(exc.status, exc.reason, exc.headers)
                return None
            self._upgrade, self._rest = upgrade, head[end:]
            return Request(upgrade_scope(upgrade, self._peer(), self._secure))

    async def _plain_get(self, head: bytes) -> bool:
        """Answer a plain ``GET`` (not an upgrade) from ``http``, if it has
        the path."""
        response = None if self._http is None else plain_get_response(head, self._http)
        if response is not None:
            await self.transport.send_raw(response)
        return response is not None

    async def refuse(
        self,
        status: int,
        reason: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        await self.transport.send_raw(refusal_response(status, reason, headers))

    async def accept(self, subprotocol: str | None) -> DirectTransport | None:
        transport, upgrade = self.transport, self._upgrade
        assert upgrade is not None  # request() returned it
        assert subprotocol is None or subprotocol in upgrade.subprotocols
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = transport.raw_socket
        if self._due is not None and sock is not None:
            self._due.done(sock)  # in time
        # Held for the welcome: one send() for both (a broken socket shows
        # at that write, and ends the connection there).
        transport.hold(accept_response(upgrade.key, subprotocol))
        transport.attach(self._rest)
        self._upgrade, self._rest = None, b""
        return transport

    def _peer(self) -> tuple[str, int] | None:
        return self._peer_address or self.transport.peer
