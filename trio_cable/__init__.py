"""trio_cable: Action Cable for trio.

Channels on the server, streams to broadcast to, one multiplexed
WebSocket per client, speaking the Rails Action Cable protocol.
"""

from ._cable import Cable as Cable
from ._cable import ConnectHook as ConnectHook
from ._cable import RedisCable as RedisCable
from ._channel import Channel as Channel
from ._connection import Connection as Connection
from ._current import current as current
from ._errors import CableError as CableError
from ._errors import ConnectionRejected as ConnectionRejected
from ._errors import HandshakeRefused as HandshakeRefused
from ._errors import ProtocolError as ProtocolError
from ._errors import Unauthorized as Unauthorized
from ._gc import tune_gc as tune_gc
from ._hub import HubStatistics as HubStatistics
from ._redis import BridgeStatistics as BridgeStatistics
from ._redis import redis_broadcast as redis_broadcast
from ._request import Headers as Headers
from ._request import Request as Request
from .auth import InvalidSignature as InvalidSignature
from .auth import InvalidToken as InvalidToken
from .auth import SessionCookie as SessionCookie
from .auth import SignedCookie as SignedCookie
from .auth import SignedToken as SignedToken
from .auth import TokenExpired as TokenExpired
from .client import CableClient as CableClient
from .client import ClientError as ClientError
from .client import Connected as Connected
from .client import ConnectionDenied as ConnectionDenied
from .client import ConnectionLost as ConnectionLost
from .client import ConnectionUnauthorized as ConnectionUnauthorized
from .client import Disconnected as Disconnected
from .client import Message as Message
from .client import ServerError as ServerError
from .client import ServerUnreachable as ServerUnreachable
from .client import Subscription as Subscription
from .client import SubscriptionOverflow as SubscriptionOverflow
from .client import SubscriptionRejected as SubscriptionRejected
from .client import SubscriptionTimeout as SubscriptionTimeout
from .client import open_cable_client as open_cable_client
from .direct import serve_cable_direct as serve_cable_direct
from .server import serve_cable as serve_cable
from .server import serve_cable_trio_websocket as serve_cable_trio_websocket

__version__ = "0.1.0"

__all__ = [
    "BridgeStatistics",
    "Cable",
    "CableClient",
    "CableError",
    "Channel",
    "ClientError",
    "ConnectHook",
    "Connected",
    "Connection",
    "ConnectionDenied",
    "ConnectionLost",
    "ConnectionRejected",
    "ConnectionUnauthorized",
    "Disconnected",
    "HandshakeRefused",
    "Headers",
    "HubStatistics",
    "InvalidSignature",
    "InvalidToken",
    "Message",
    "ProtocolError",
    "RedisCable",
    "Request",
    "ServerError",
    "ServerUnreachable",
    "SessionCookie",
    "SignedCookie",
    "SignedToken",
    "Subscription",
    "SubscriptionOverflow",
    "SubscriptionRejected",
    "SubscriptionTimeout",
    "TokenExpired",
    "Unauthorized",
    "current",
    "open_cable_client",
    "redis_broadcast",
    "serve_cable",
    "serve_cable_direct",
    "serve_cable_trio_websocket",
    "tune_gc",
]
