"""trio_cable: Action Cable for trio.

Channels on the server, streams to broadcast to, one multiplexed
WebSocket per client, speaking the Rails Action Cable protocol.

This namespace is the server's API; the Python client is
:mod:`trio_cable.client`.
"""

from ._cable import Cable as Cable
from ._cable import ConnectHook as ConnectHook
from ._channel import Channel as Channel
from ._channel import Presence as Presence
from ._channel import periodically as periodically
from ._channel import rescue_from as rescue_from
from ._connection import Connection as Connection
from ._current import current as current
from ._errors import ActionError as ActionError
from ._errors import CableError as CableError
from ._errors import ConnectionRejected as ConnectionRejected
from ._errors import HandshakeRefused as HandshakeRefused
from ._errors import ProtocolError as ProtocolError
from ._errors import Unauthorized as Unauthorized
from ._gc import tune_gc as tune_gc
from ._history import HistoryPolicy as HistoryPolicy
from ._hub import HubStatistics as HubStatistics
from ._presence import PresenceEvent as PresenceEvent
from ._redis import BridgeStatistics as BridgeStatistics
from ._redis import redis_broadcast as redis_broadcast
from ._redis_cable import RedisCable as RedisCable
from ._remote import redis_disconnect as redis_disconnect
from ._request import Headers as Headers
from ._request import Request as Request
from ._run import run as run
from .auth import InvalidSignature as InvalidSignature
from .auth import InvalidToken as InvalidToken
from .auth import SessionCookie as SessionCookie
from .auth import SignedCookie as SignedCookie
from .auth import SignedToken as SignedToken
from .auth import TokenExpired as TokenExpired
from .direct import serve_cable_direct as serve_cable_direct
from .server import serve_cable as serve_cable
from .server import serve_cable_trio_websocket as serve_cable_trio_websocket

__version__ = "0.1.0"

__all__ = [
    "ActionError",
    "BridgeStatistics",
    "Cable",
    "CableError",
    "Channel",
    "ConnectHook",
    "Connection",
    "ConnectionRejected",
    "HandshakeRefused",
    "Headers",
    "HistoryPolicy",
    "HubStatistics",
    "InvalidSignature",
    "InvalidToken",
    "Presence",
    "PresenceEvent",
    "ProtocolError",
    "RedisCable",
    "Request",
    "SessionCookie",
    "SignedCookie",
    "SignedToken",
    "TokenExpired",
    "Unauthorized",
    "current",
    "periodically",
    "redis_broadcast",
    "redis_disconnect",
    "rescue_from",
    "run",
    "serve_cable",
    "serve_cable_direct",
    "serve_cable_trio_websocket",
    "tune_gc",
]

from ._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
