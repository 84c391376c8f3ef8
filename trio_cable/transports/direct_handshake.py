"""The direct transport's handshake: the client's HTTP upgrade request,
read with wsproto on a :class:`~trio_cable.transports.direct.DirectTransport`,
refused or accepted (and a plain ``GET`` answered, see
:mod:`.plain_http`)."""

from __future__ import annotations

from wsproto import ConnectionType
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WSRequest
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from .._errors import TransportClosed
from .._request import Request
from .direct import DirectTransport
from .plain_http import HTTPRoutes, plain_get_response
from .scope import wsproto_scope

__all__ = ["DirectHandshake"]


class DirectHandshake:
    """The handshake on a :class:`DirectTransport`, read with wsproto."""

    __slots__ = ("_handshake", "_http", "_secure", "transport")

    def __init__(
        self,
        transport: DirectTransport,
        *,
        secure: bool,
        http: HTTPRoutes | None = None,
    ) -> None:
        self.transport = transport
        self._secure = secure
        self._http = http
        self._handshake = H11Handshake(ConnectionType.SERVER)

    async def request(self) -> Request | None:
        """The client's upgrade request; None if it left or sent nonsense
        (which is answered with wsproto's 400/426 here), or sent a plain
        GET that ``http`` answered."""
        transport, handshake = self.transport, self._handshake
        head = b""  # kept only until the request is whole
        while True:
            data = await transport.recv_raw()
            if not data:
                return None
            head += data
            try:
                handshake.receive_data(data)
                for event in handshake.events():
                    if isinstance(event, WSRequest):
                        scope = wsproto_scope(event, self._peer(), self._secure)
                        return Request(scope)
            except RemoteProtocolError as exc:
                if await self._plain_get(head):
                    return None
                hint = exc.event_hint
                if isinstance(hint, RejectConnection):
                    await self.refuse(hint.status_code, str(exc))
                return None

    async def _plain_get(self, head: bytes) -> bool:
        """Answer a plain ``GET`` (not an upgrade) from ``http``, if it has
        the path."""
        response = None if self._http is None else plain_get_response(head, self._http)
        if response is not None:
            await self.transport.send_raw(response)
        return response is not None

    async def refuse(self, status: int, reason: str) -> None:
        body = reason.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % len(body)),
            (b"connection", b"close"),
        ]
        handshake = self._handshake
        data = handshake.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        )
        data += handshake.send(RejectData(data=body))
        await self.transport.send_raw(data)

    async def accept(self, subprotocol: str | None) -> DirectTransport | None:
        transport, handshake = self.transport, self._handshake
        data = handshake.send(AcceptConnection(subprotocol=subprotocol))
        try:
            transport.write_raw_nowait(data)
            await transport.flush()
        except TransportClosed:
            return None
        ws = handshake.connection
        assert ws is not None  # made by the accept
        transport.attach(ws)
        return transport

    def _peer(self) -> tuple[str, int] | None:
        return self.transport.peer
