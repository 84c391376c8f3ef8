"""The Channel base class and the rules for which methods are actions."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .protocol.server import ChannelRules

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["Channel", "ConnectionView", "SubscriptionView"]


class BroadcastHost(Protocol):
    def broadcast_sync(self, stream: str, data: Any) -> int: ...


class ConnectionView(Protocol):
    """A connection as channel code sees it (a :class:`~trio_cable.Connection`)."""

    @property
    def id(self) -> str: ...
    @property
    def identity(self) -> Any: ...
    @property
    def request(self) -> Request: ...
    @property
    def cable(self) -> BroadcastHost: ...
    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None: ...


class SubscriptionView(Protocol):
    """What a channel instance needs of the subscription it serves."""

    rejected: bool

    @property
    def identifier(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def connection(self) -> ConnectionView: ...
    @property
    def streams(self) -> list[str]: ...
    def call_soon(self, fn: Callable[..., None], *args: Any) -> None: ...
    def stream_from(self, stream: str, whisper: bool = False) -> None: ...
    def stop_stream_from(self, stream: str) -> None: ...
    def stop_all_streams(self) -> None: ...
    def transmit(self, data: Any) -> None: ...


#: Lifecycle hooks: called by the server, never by a client.
LIFECYCLE = frozenset({"subscribed", "unsubscribed"})


class Channel:
    """Base class of server-side channels.

    Subclass it, register the subclass with :meth:`Cable.channel`, and a
    client subscribes to it by class name. One instance lives for one
    subscription. Override :meth:`subscribed` (authorize, call
    :meth:`stream_from`) and :meth:`unsubscribed`; every other public
    method you define is an *action* the client can perform with
    ``perform(name, data)``. ``receive(data)``, if you define it, is the
    default action (the client's ``send(data)``).

    Hooks and actions may be ``async def`` (they run in the subscription's
    task) or plain ``def`` (they run in a worker thread, so blocking calls
    are fine there). Actions take ``data`` (the decoded payload, ``action``
    key included) or no argument at all.

    Do not override ``__init__``; set state up in :meth:`subscribed`.
    """

    #: The name clients subscribe with; defaults to the class name.
    channel_name: ClassVar[str]
    _actions: ClassVar[dict[str, tuple[Callable[..., Any], bool, bool]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "channel_name" not in cls.__dict__:
            cls.channel_name = cls.__name__
        cls._actions = _collect_actions(cls)

    def __init__(self, subscription: SubscriptionView) -> None:
        self._subscription = subscription

    # -- who and what ------------------------------------------------------

    @property
    def params(self) -> Mapping[str, Any]:
        """The identifier's keys other than ``channel``."""
        return self._subscription.params

    @property
    def identifier(self) -> str:
        """The identifier string exactly as the client sent it."""
        return self._subscription.identifier

    @property
    def connection(self) -> ConnectionView:
        """The connection this subscription lives on."""
        return self._subscription.connection

    @property
    def current_user(self) -> Any:
        """What the cable's connect hook returned (``None``: anonymous)."""
        return self._subscription.connection.identity

    @property
    def authenticated(self) -> bool:
        """True when the connection has an identity."""
        return self._subscription.connection.identity is not None

    @property
    def request(self) -> Request:
        """The handshake request: headers, cookies, query."""
        return self._subscription.connection.request

    @property
    def scope(self) -> Mapping[str, Any]:
        """The raw ASGI scope of the WebSocket (or its equivalent)."""
        return self._subscription.connection.request.scope

    @property
    def streams(self) -> frozenset[str]:
        """The streams this subscription currently listens to."""
        return frozenset(self._subscription.streams)

    # -- lifecycle hooks ---------------------------------------------------

    async def subscribed(self) -> None:
        """Called once when a client subscribes; authorize and stream here."""

    async def unsubscribed(self) -> None:
        """Called after the subscription ended and its streams were left.

        Runs on unsubscribe and on every kind of disconnect, shielded from
        cancellation for at most the cable's ``hook_timeout``.
        """

    # -- streams and output (non-blocking; callable from threads) ----------

    def stream_from(self, stream: str, *, whisper: bool = False) -> None:
        """Deliver broadcasts to ``stream`` to this subscription.

        With ``whisper``, the client may also whisper on it (AnyCable's
        ``channel.whisper(data)``): each whisper goes to the stream's other
        subscribers in this process, never back to the sender, never into
        history. One stream per subscription takes whispers (the last one
        opened so).
        """
        self._subscription.call_soon(self._subscription.stream_from, stream, whisper)

    def stop_stream_from(self, stream: str) -> None:
        """Stop listening to ``stream``."""
        self._subscription.call_soon(self._subscription.stop_stream_from, stream)

    def stop_all_streams(self) -> None:
        """Stop listening to every stream."""
        self._subscription.call_soon(self._subscription.stop_all_streams)

    def transmit(self, data: Any) -> None:
        """Send ``data`` to this subscription only.

        Inside :meth:`subscribed`, messages are held back and sent just
        before the confirmation; a :meth:`reject` discards them.
        """
        self._subscription.call_soon(self._subscription.transmit, data)

    send = transmit

    def broadcast(self, stream: str, data: Any) -> int:
        """Send ``data`` to every subscriber of ``stream``, anywhere.

        Returns how many local subscribers it was handed to.
        """
        cable = self._subscription.connection.cable
        return cable.broadcast_sync(stream, data)

    def reject(self) -> None:
        """Refuse the subscription (call it from :meth:`subscribed`)."""
        self._subscription.rejected = True


def _collect_actions(
    cls: type[Channel],
) -> dict[str, tuple[Callable[..., Any], bool, bool]]:
    """Map action name -> (function, is_async, takes_data) for ``cls``."""
    actions: dict[str, tuple[Callable[..., Any], bool, bool]] = {}
    for name in dir(cls):
        if name.startswith("_") or name in RESERVED:
            continue
        attr = inspect.getattr_static(cls, name)
        if not isinstance(attr, FunctionType):
            # properties, class attributes, staticmethods, classmethods
            continue
        params = list(inspect.signature(attr).parameters.values())[1:]
        takes_data = bool(params) or any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in params
        )
        actions[name] = (attr, inspect.iscoroutinefunction(attr), takes_data)
    return actions


def rules_for(cls: type[Channel]) -> ChannelRules:
    """What the protocol needs to know to refuse actions ``cls`` lacks."""
    return ChannelRules(cls.channel_name, cls._actions, RESERVED, cls)


def action_for(
    cls: type[Channel], action: str
) -> tuple[Callable[..., Any], bool, bool]:
    """(function, is_async, takes_data) of an action the protocol let through."""
    return cls._actions[action]


Channel.channel_name = "Channel"
Channel._actions = {}

#: Every public name of the base class: hooks and internals, never actions.
RESERVED = (
    frozenset(name for name in dir(Channel) if not name.startswith("_")) | LIFECYCLE
)
