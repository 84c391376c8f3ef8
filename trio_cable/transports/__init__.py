"""Transports: accepted WebSockets behind one contract.

This package is a leaf: it imports neither the cable nor the connection.

* :mod:`.base`: the :class:`Transport` contract (``write_nowait``,
  ``flush``, ``receive``, ``close``), the :class:`MessageSocket` a socket
  that waits to send implements, and the :class:`Handshake`.
* :mod:`.queued`: :class:`QueuedTransport`, the contract for a
  :class:`MessageSocket`.
* :mod:`.direct`, :mod:`.direct_server`: sockets we own (the default).
* :mod:`.trio_websocket`, :mod:`.trio_websocket_server`: trio-websocket's
  connections, on listeners we serve (so plain GETs reach us).
* :mod:`.asgi`, :mod:`.memory`: the others.
"""

from .base import Handshake as Handshake
from .base import MessageSocket as MessageSocket
from .base import Transport as Transport
from .base import TransportClosed as TransportClosed
from .queued import QueuedTransport as QueuedTransport

__all__ = [
    "Handshake",
    "MessageSocket",
    "QueuedTransport",
    "Transport",
    "TransportClosed",
]
