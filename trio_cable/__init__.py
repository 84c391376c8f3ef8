"""trio_cable: Action Cable for trio.

Channels on the server, streams to broadcast to, one multiplexed
WebSocket per client, speaking the Rails Action Cable protocol.
"""

from ._cable import Cable as Cable
from ._cable import ConnectHook as ConnectHook
from ._cable import RedisCable as RedisCable
from ._channel import Channel as Channel
from ._connection import Connection as Connection
from ._errors import CableError as CableError
from ._errors import ConnectionRejected as ConnectionRejected
from ._errors import ProtocolError as ProtocolError
from ._errors import Unauthorized as Unauthorized
from ._hub import HubStatistics as HubStatistics
from ._redis import BridgeStatistics as BridgeStatistics
from ._redis import redis_broadcast as redis_broadcast
from ._request import Headers as Headers
from ._request import Request as Request
from .server import serve_cable as serve_cable

__version__ = "0.1.0"

__all__ = [
    "BridgeStatistics",
    "Cable",
    "CableError",
    "Channel",
    "ConnectHook",
    "Connection",
    "ConnectionRejected",
    "Headers",
    "HubStatistics",
    "ProtocolError",
    "RedisCable",
    "Request",
    "Unauthorized",
    "redis_broadcast",
    "serve_cable",
]
