"""The Channel base class and the rules for which methods are actions;
the ``periodically`` and ``rescue_from`` decorators."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import FunctionType, MethodType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ._errors import CableError
from ._naming import broadcasting_for
from .protocol.server import ChannelRules

if TYPE_CHECKING:
    from ._request import Request

__all__ = [
    "Channel",
    "ConnectionView",
    "Presence",
    "SubscriptionView",
    "periodically",
    "rescue_from",
]

F = TypeVar("F", bound=Callable[..., Any])
#: A stream_from callback: the broadcast's data in, what to send out
#: (None: nothing).
StreamCallback = Callable[[Any], Any]


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

    #: False, True (rejected), or why: (reason, message) for the frame.
    rejected: bool | tuple[str, str | None]

    @property
    def identifier(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def connection(self) -> ConnectionView: ...
    @property
    def streams(self) -> list[str]: ...
    def call_soon(self, fn: Callable[..., None], *args: Any) -> None: ...
    def stream_from(
        self,
        stream: str,
        callback: StreamCallback | None = None,
        whisper: bool = False,
    ) -> None: ...
    def add_timer(self, fn: Callable[[], Any], seconds: float) -> None: ...
    def open_presence(self, stream: str) -> None: ...
    def presence_join(self, id: str | int, info: Any) -> None: ...
    def presence_leave(self) -> None: ...
    def stop_stream_from(self, stream: str) -> None: ...
    def stop_all_streams(self) -> None: ...
    def transmit(self, data: Any) -> None: ...


#: Lifecycle hooks: called by the server, never by a client.
LIFECYCLE = frozenset({"subscribed", "unsubscribed"})


def periodically(seconds: float) -> Callable[[F], F]:
    """Run the decorated channel method every ``seconds`` while a
    subscription is confirmed (Rails' ``periodically``).

    The timer starts at the confirmation and ends with the subscription
    (unsubscribe or disconnect); the first call comes ``seconds`` after
    the confirmation. The method may be ``async def`` or plain ``def``
    (run in a worker thread) and takes no argument; it is not an action.
    An exception is reported like an action's (or handled by
    :func:`rescue_from`) and the timer carries on.
    """
    if not seconds > 0:
        raise ValueError(f"periodically() needs a positive interval, not {seconds!r}")

    def mark(fn: F) -> F:
        fn.__cable_every__ = float(seconds)  # type: ignore[attr-defined]  # a mark read by Channel
        return fn

    return mark


def rescue_from(*types: type[BaseException]) -> Callable[[F], F]:
    """Make the decorated channel method handle these exceptions (Rails'
    ``rescue_from``) when an action, a timer or a hook raises them.

    The handler takes the exception; it may be ``async def`` or plain
    ``def`` (run in a worker thread). It is not an action. Handlers of a
    subclass are tried before its bases'; the first whose types match
    handles the error, which is then neither logged nor reported to the
    client. A handler that raises is reported as the original error would
    have been.
    """
    if not types or not all(
        isinstance(t, type) and issubclass(t, Exception) for t in types
    ):
        raise TypeError("rescue_from() takes Exception subclasses")

    def mark(fn: F) -> F:
        fn.__cable_rescues__ = types  # type: ignore[attr-defined]  # a mark read by Channel
        return fn

    return mark


class _ClassOrInstance:
    """A method bound to the instance when called on one, else to the class."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: object, cls: type | None = None) -> Callable[..., Any]:
        return MethodType(self._fn, cls if obj is None else obj)


def _broadcast_to(self_or_cls: Channel | type[Channel], obj: Any, data: Any) -> int:
    """Broadcast ``data`` to the stream of ``obj`` for this channel (see
    :meth:`Channel.broadcasting_for`), from anywhere: a channel, a trio
    task, a worker thread or any thread while the cable runs.

    On a channel instance it uses the subscription's cable; on the class,
    the cable the class is registered on. Returns how many local
    subscribers it was handed to.

    Raises:
        CableError: called on a class registered on no cable or on several
            (use ``cable.broadcast(Channel.broadcasting_for(obj), data)``).
        TypeError: ``obj`` cannot name a stream.
    """
    if isinstance(self_or_cls, Channel):
        cable = self_or_cls._subscription.connection.cable
        stream = self_or_cls.broadcasting_for(obj)
    else:
        cables = self_or_cls.__dict__.get("_cables", ())
        if len(cables) != 1:
            raise CableError(
                f"{self_or_cls.__name__} is registered on {len(cables)} cables: "
                "use cable.broadcast(cls.broadcasting_for(obj), data)"
            )
        cable = cables[0]
        stream = self_or_cls.broadcasting_for(obj)
    return cable.broadcast_sync(stream, data)


class Presence:
    """A channel's presence on its presence stream (``self.presence``).

    Non-blocking; callable from plain-def hooks and actions (worker
    threads) too.
    """

    __slots__ = ("_subscription",)

    def __init__(self, subscription: SubscriptionView) -> None:
        self._subscription = subscription

    def join(self, id: str | int, info: Any = None) -> None:
        """Be member ``id`` (a string, or an int spelt out) of the presence
        stream, described by ``info`` (any JSON; the latest wins). One id
        may be held by many subscriptions: it joins with the first and
        leaves after the last. Joining as another id leaves the previous.

        Raises:
            CableError: the channel opened no presence stream.
            ProtocolError: ``id`` is empty or too long.
            TypeError: ``info`` is not JSON-encodable.
        """
        sub = self._subscription
        sub.call_soon(sub.presence_join, id, info)

    def leave(self) -> None:
        """Stop being a member, at once (a no-op if not joined)."""
        sub = self._subscription
        sub.call_soon(sub.presence_leave)


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
    #: Instance attributes a session kept in Redis carries to the worker
    #: that restores it (AnyCable's ``state_attr_accessor``); each must be
    #: JSON-encodable. Others start unset there (docs/reliability.md).
    session_state: ClassVar[tuple[str, ...]] = ()
    _actions: ClassVar[dict[str, tuple[Callable[..., Any], bool, bool]]]
    #: (method name, seconds) of each ``@periodically`` method.
    _timers: ClassVar[tuple[tuple[str, float], ...]]
    #: (exception types, handler) of each ``@rescue_from`` method, the
    #: subclass's first.
    _rescuers: ClassVar[tuple[tuple[tuple[type[BaseException], ...], Any], ...]]
    #: The cables this very class is registered on (read from its own
    #: ``__dict__``: a subclass is registered on its own).
    _cables: ClassVar[tuple[BroadcastHost, ...]]
    _rules: ClassVar[ChannelRules]  # made by rules_for(), on first use
    #: Whether clients may join and leave the presence stream themselves
    #: (AnyCable's ``join``/``leave`` commands); they may always ask who
    #: is there. False: only :attr:`presence` (server code) joins.
    client_presence: ClassVar[bool] = True
    #: Whether its subscriptions get the presence stream's join and leave
    #: events. False for large audiences that only join (and may ask who
    #: is there): a stream of N such members sends N frames per event
    #: instead of N (each join) times N.
    presence_events: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "channel_name" not in cls.__dict__:
            cls.channel_name = cls.__name__
        cls._actions = _collect_actions(cls)
        cls._timers, cls._rescuers = _collect_marks(cls)

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

    @property
    def presence(self) -> Presence:
        """This subscription's presence on the stream it opened with
        ``stream_from(stream, presence=True)`` (see docs/presence.md)."""
        return Presence(self._subscription)

    # -- lifecycle hooks ---------------------------------------------------

    async def subscribed(self) -> None:
        """Called once when a client subscribes; authorize and stream here."""

    async def unsubscribed(self) -> None:
        """Called after the subscription ended and its streams were left.

        Runs on unsubscribe and on every kind of disconnect, shielded from
        cancellation for at most the cable's ``hook_timeout``; for an
        extended-protocol client that dropped, when its kept session
        expires unrestored (see docs/reliability.md), not at the drop.
        """

    # -- streams and output (non-blocking; callable from threads) ----------

    def stream_from(
        self,
        stream: str,
        callback: StreamCallback | None = None,
        *,
        whisper: bool = False,
        presence: bool = False,
    ) -> None:
        """Deliver broadcasts to ``stream`` to this subscription.

        With ``callback`` (Rails' block form), each broadcast's decoded data
        goes through ``callback(data)`` first, and what it returns is sent
        instead (``None``: nothing, a filter). It is a plain function called
        in the broadcasting task, so keep it quick and non-blocking; an
        exception drops that message for this subscription and is logged.
        It costs a decode and an encode per message for this subscription
        only (the encode-once fan-out carries on for every other one).

        With ``whisper``, the client may also whisper on it (AnyCable's
        ``channel.whisper(data)``): each whisper goes to the stream's other
        subscribers in this process, never back to the sender, never into
        history. One stream per subscription takes whispers (the last one
        opened so).

        With ``presence``, the subscription tracks presence on it (one
        stream per subscription, the last one opened so): it gets the
        stream's join and leave events, its client may ask who is there
        and (unless :attr:`client_presence` is false) join and leave, and
        :attr:`presence` joins from server code. See docs/presence.md.
        """
        sub = self._subscription
        sub.call_soon(sub.stream_from, stream, callback, whisper)
        if presence:
            sub.call_soon(sub.open_presence, stream)

    def stream_for(self, obj: Any, callback: StreamCallback | None = None) -> None:
        """:meth:`stream_from` the stream of ``obj`` for this channel (see
        :meth:`broadcasting_for`)."""
        self.stream_from(self.broadcasting_for(obj), callback)

    @classmethod
    def broadcasting_for(cls, obj: Any) -> str:
        """The stream name of ``obj`` for this channel (Rails'
        ``broadcasting_for``): ``"<channel_name>:<name of obj>"``. An object
        names itself with a ``__cable_stream__()`` method returning a
        string; by default a ``str`` is itself, an ``int`` its digits, a
        dataclass with an ``id`` field ``"ClassName:<id>"``, a tuple its
        items' names joined by ``":"``.

        Raises:
            TypeError: ``obj`` cannot name a stream.
        """
        return broadcasting_for(cls.channel_name, obj)

    broadcast_to = _ClassOrInstance(_broadcast_to)

    def periodically(self, fn: Callable[[], Any], seconds: float) -> None:
        """Call ``fn`` (``async def`` or plain ``def``, no argument) every
        ``seconds`` while this subscription is confirmed: the method form
        of :func:`~trio_cable.periodically`, for timers set up in
        :meth:`subscribed` or later."""
        if not seconds > 0:
            raise ValueError(
                f"periodically() needs a positive interval, not {seconds!r}"
            )
        self._subscription.call_soon(self._subscription.add_timer, fn, float(seconds))

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

    def reject(self, reason: str | None = None, message: str | None = None) -> None:
        """Refuse the subscription (call it from :meth:`subscribed`).

        ``reason`` (a short code such as ``forbidden``) and ``message``
        (what went wrong, for people) go in the ``reject_subscription``
        frame and the log line; clients that do not know them ignore them.
        """
        self._subscription.rejected = True if reason is None else (reason, message)


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
        if hasattr(attr, "__cable_every__") or hasattr(attr, "__cable_rescues__"):
            continue  # timers and error handlers: the server calls them
        params = list(inspect.signature(attr).parameters.values())[1:]
        takes_data = bool(params) or any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in params
        )
        actions[name] = (attr, inspect.iscoroutinefunction(attr), takes_data)
    return actions


def _collect_marks(
    cls: type[Channel],
) -> tuple[
    tuple[tuple[str, float], ...],
    tuple[tuple[tuple[type[BaseException], ...], Any], ...],
]:
    """The ``@periodically`` and ``@rescue_from`` methods of ``cls``; a
    subclass's handlers come before its bases'."""
    timers: dict[str, float] = {}
    rescuers: list[tuple[tuple[type[BaseException], ...], Any]] = []
    for klass in cls.__mro__:
        for name, attr in vars(klass).items():
            if not isinstance(attr, FunctionType):
                continue
            if getattr(cls, name) is not attr:
                continue  # overridden in a subclass
            every = getattr(attr, "__cable_every__", None)
            if every is not None:
                timers[name] = every
            types = getattr(attr, "__cable_rescues__", None)
            if types is not None:
                rescuers.append((types, attr))
    return tuple(timers.items()), tuple(rescuers)


def rules_for(cls: type[Channel]) -> ChannelRules:
    """What the protocol needs to know to refuse actions ``cls`` lacks."""
    # One per class, not per subscription (each holds its rules); made
    # anew if the class was registered under another name since.
    rules: ChannelRules | None = cls.__dict__.get("_rules")
    if rules is None or rules.name != cls.channel_name:
        rules = ChannelRules(cls.channel_name, cls._actions, RESERVED, cls)
        cls._rules = rules
    return rules


def action_for(
    cls: type[Channel], action: str
) -> tuple[Callable[..., Any], bool, bool]:
    """(function, is_async, takes_data) of an action the protocol let through."""
    return cls._actions[action]


Channel.channel_name = "Channel"
Channel._actions = {}
Channel._timers = Channel._rescuers = ()

#: Every public name of the base class: hooks and internals, never actions.
RESERVED = (
    frozenset(name for name in dir(Channel) if not name.startswith("_")) | LIFECYCLE
)
