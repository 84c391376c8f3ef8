"""The Python client: talk to any Action Cable server from trio.

One WebSocket per :class:`CableClient`, every subscription multiplexed
over it, with the official JavaScript client's behaviour: subscriptions
are re-sent every 500 ms until the server answers, a connection without a
frame for 6 s counts as dead, a lost connection is reopened with capped
exponential backoff and jitter and every open subscription is subscribed
again, and a ``disconnect`` frame with ``reconnect: false`` stops for good.
It offers AnyCable's ``actioncable-v1-ext-json`` first (``actioncable-v1-json``
otherwise): then a dropped client resumes its session and receives what it
missed on streams with history, once and in order.

::

    async with open_cable_client("ws://127.0.0.1:8000/cable") as client:
        async with client.subscribe("ChatChannel", room="general") as chat:
            await chat.perform("speak", {"message": "hi"})
            async for message in chat:
                print(message)

Lifetimes: :func:`open_cable_client` owns the socket and every task the
client runs; :meth:`CableClient.subscribe` owns one subscription. Leaving
either closes what it owns, and nothing keeps running.

Layout: the protocol rules are :class:`trio_cable.protocol.client.ClientProtocol`
(sans I/O); here ``_connection`` drives it, ``_session`` runs one socket,
``_reconnect`` the loop around it, ``_handshake`` opens a socket,
``_subscription`` is the consumer's side, ``_options`` the options.
"""

from .._errors import ActionFailed as ActionFailed
from .._errors import CallTimeout as CallTimeout
from .._errors import ClientError as ClientError
from .._errors import ConnectionDenied as ConnectionDenied
from .._errors import ConnectionLost as ConnectionLost
from .._errors import ConnectionUnauthorized as ConnectionUnauthorized
from .._errors import ServerUnreachable as ServerUnreachable
from .._errors import SubscriptionOverflow as SubscriptionOverflow
from .._errors import SubscriptionRejected as SubscriptionRejected
from .._errors import SubscriptionTimeout as SubscriptionTimeout
from ..protocol.client import make_identifier as make_identifier
from ._client import CableClient as CableClient
from ._client import open_cable_client as open_cable_client
from ._events import ClientEvent as ClientEvent
from ._events import Connected as Connected
from ._events import Disconnected as Disconnected
from ._events import HistoryLost as HistoryLost
from ._events import Message as Message
from ._events import PresenceChanged as PresenceChanged
from ._events import Recovered as Recovered
from ._events import ServerError as ServerError
from ._options import ClientOptions as ClientOptions
from ._options import OverflowPolicy as OverflowPolicy
from ._presence import ClientPresence as ClientPresence
from ._reconnect import backoff_delay as backoff_delay
from ._subscription import Subscription as Subscription

__all__ = [
    "ActionFailed",
    "CableClient",
    "CallTimeout",
    "ClientError",
    "ClientEvent",
    "ClientOptions",
    "ClientPresence",
    "Connected",
    "ConnectionDenied",
    "ConnectionLost",
    "ConnectionUnauthorized",
    "Disconnected",
    "HistoryLost",
    "Message",
    "OverflowPolicy",
    "PresenceChanged",
    "Recovered",
    "ServerError",
    "ServerUnreachable",
    "Subscription",
    "SubscriptionOverflow",
    "SubscriptionRejected",
    "SubscriptionTimeout",
    "backoff_delay",
    "make_identifier",
    "open_cable_client",
]

from .._util import fixup_module_metadata as _fixup_module_metadata

_fixup_module_metadata(__name__, globals())
del _fixup_module_metadata
