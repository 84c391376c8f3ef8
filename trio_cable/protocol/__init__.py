"""The Action Cable protocol, sans-I/O: no event loop, no socket.

* :mod:`.codec`: client frames parsed into commands, server frames encoded.
* :mod:`.dialects`: the wire dialects, chosen by subprotocol;
  :mod:`.guide` is the reference Channels guide's (``proper-channels-v1-json``).
* :mod:`.server`: :class:`ServerProtocol`, one connection's protocol state.
* :mod:`.wsframe`: WebSocket text frames for the direct transport.
* :mod:`.client`: :class:`~.client.ClientProtocol`, the client's side, which
  :mod:`trio_cable.client` drives.
"""

from .codec import PROTOCOL as PROTOCOL
from .codec import Command as Command
from .codec import Limits as Limits
from .codec import parse_frame as parse_frame
from .dialects import DIALECTS as DIALECTS
from .dialects import ActionCableV1JSON as ActionCableV1JSON
from .dialects import Dialect as Dialect
from .dialects import ProperChannelsV1JSON as ProperChannelsV1JSON
from .dialects import choose_dialect as choose_dialect
from .server import ChannelRules as ChannelRules
from .server import ProtocolSettings as ProtocolSettings
from .server import ServerProtocol as ServerProtocol
from .server import ServerSubscription as ServerSubscription

__all__ = [
    "DIALECTS",
    "PROTOCOL",
    "ActionCableV1JSON",
    "ChannelRules",
    "Command",
    "Dialect",
    "Limits",
    "ProperChannelsV1JSON",
    "ProtocolSettings",
    "ServerProtocol",
    "ServerSubscription",
    "choose_dialect",
    "parse_frame",
]
