"""A kept session as JSON, so that another process can restore it.

What crosses (:func:`encode_session`):

* the identity the connect hook returned, which must be JSON-encodable;
* per confirmed subscription: its identifier and params, its channel's
  name, its streams and which one takes whispers, its timers (methods
  of the channel, by name), the ``stream_from`` callbacks (methods of the
  channel, by name) and the attributes its channel class lists in
  ``session_state`` (JSON-encodable). The restoring worker builds a new
  channel instance from these (no ``subscribed()``), living in an
  :class:`Orphan` until a connection adopts it.

A session that cannot cross raises ``SessionNotPortable``; the Redis
store (``_redis_sessions``) keeps it in its own process instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._current import current_user
from ._errors import SessionNotPortable
from ._hooks import call_hook, rescued
from ._request import Request
from ._sessions import KeptSubscription, Session
from .transports.scope import websocket_scope

if TYPE_CHECKING:
    from ._channel import Channel, StreamCallback
    from ._options import CableOptions

__all__ = ["FORMAT", "Orphan", "SessionHost", "decode_session", "encode_session"]

log = logging.getLogger("trio_cable.sessions")

#: The version a blob carries (``v``).
FORMAT: Final = 1


class SessionHost(Protocol):
    """What a restored session (and the Redis store) needs of its cable."""

    @property
    def options(self) -> CableOptions: ...
    @property
    def channels(self) -> Mapping[str, type[Channel]]: ...
    def broadcast_sync(self, stream: str, data: Any) -> int: ...


def _json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise SessionNotPortable(f"{what} is not JSON-encodable ({exc})") from None


def _method(channel: Channel, fn: Callable[..., Any] | None, what: str) -> str | None:
    """A callback of ``channel`` by name: it must be one of its methods."""
    if fn is None:
        return None
    name = getattr(fn, "__name__", "")
    if getattr(fn, "__self__", None) is channel and getattr(channel, name, None) == fn:
        return str(name)
    label = getattr(fn, "__qualname__", type(fn).__name__)
    raise SessionNotPortable(
        f"{channel.channel_name}: the {what} {label} is not a method of the channel"
    )


def _encode_kept(kept: KeptSubscription) -> dict[str, Any]:
    channel = kept.channel
    cls = type(channel)
    state = {}
    for attr in cls.session_state:
        if hasattr(channel, attr):
            value = getattr(channel, attr)
            _json(value, f"{cls.channel_name}.{attr} (in session_state)")
            state[attr] = value
    return {
        "identifier": kept.identifier,
        "channel": cls.channel_name,
        "params": kept.params,
        "streams": [
            [stream, _method(channel, callback, "stream_from callback")]
            for stream, callback in kept.streams
        ],
        "whisper": kept.whisper_stream,
        "presence": kept.presence_stream,
        "timers": [
            [_method(channel, fn, "timer"), seconds]
            for fn, seconds in kept.timers or ()
        ],
        "state": state,
    }


def encode_session(session: Session) -> str:
    """``session`` as JSON, for another process.

    Raises:
        SessionNotPortable: naming what cannot cross.
    """
    _json(session.identity, f"the identity (a {type(session.identity).__name__})")
    # The drop on the wall clock: another process has another trio clock.
    dropped = time.time() - (trio.current_time() - session.dropped_at)
    return json.dumps(
        {
            "v": FORMAT,
            "identity": session.identity,
            "dropped": dropped,
            "subscriptions": [_encode_kept(kept) for kept in session.subscriptions],
        },
        separators=(",", ":"),
    )


def decode_session(blob: str | bytes, host: SessionHost) -> Session:
    """The session ``blob`` (from :func:`encode_session`) describes, with
    a new channel instance per subscription. A subscription whose channel
    this process does not have (or no longer fits) is left out, logged:
    the client subscribes to it again.

    Raises:
        ValueError: ``blob`` is not such JSON.
    """
    try:
        data = json.loads(blob)
        identity = data["identity"]
        dropped = trio.current_time() - max(0.0, time.time() - float(data["dropped"]))
        items = list(data["subscriptions"])
    except (TypeError, KeyError) as exc:
        raise ValueError(f"not a kept session: {exc!r}") from None
    session = Session(identity, dropped_at=dropped)
    for item in items:
        kept = _decode_kept(item, identity, host)
        if kept is not None:
            session.subscriptions.append(kept)
    return session


def _decode_kept(
    item: dict[str, Any], identity: Any, host: SessionHost
) -> KeptSubscription | None:
    try:
        cls = host.channels.get(item["channel"])
        if cls is None:
            raise LookupError(f"no channel {item['channel']!r} is registered here")
        orphan = Orphan(host, identity, item["identifier"], item["params"])
        channel = orphan.channel = cls(orphan)
        for attr, value in item["state"].items():
            setattr(channel, attr, value)
        streams: list[tuple[str, StreamCallback | None]] = [
            (stream, None if name is None else getattr(channel, name))
            for stream, name in item["streams"]
        ]
        timers = [(getattr(channel, name), float(s)) for name, s in item["timers"]]
        return KeptSubscription(
            item["identifier"], item["params"], channel, streams,
            item["whisper"], timers or None, orphan, item.get("presence"),
        )  # fmt: skip
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        log.warning(
            "a session's subscription %s cannot be restored here (%s): "
            "left out, the client subscribes again",
            str(item.get("identifier") if isinstance(item, dict) else item)[:200],
            exc,
        )
        return None


class Orphan:
    """What a channel restored from Redis sees of its subscription and
    connection until a connection adopts it; and what runs its
    ``unsubscribed()`` if its session expires unrestored (then there is
    no socket: ``transmit`` and the stream methods do nothing)."""

    rejected: bool | tuple[str, str | None] = False
    id = "kept"

    def __init__(
        self, host: SessionHost, identity: Any, identifier: str, params: Any
    ) -> None:
        self.host = host
        self.identity = identity
        self.identifier = identifier
        self.params: Mapping[str, Any] = params
        self.streams: list[str] = []
        # The handshake is not kept (it may carry tokens): an empty one.
        self.request = Request(websocket_scope("/", [], client=None, subprotocols=[]))
        self.channel: Channel | None = None

    # What the channel sees (SubscriptionView, ConnectionView).
    @property
    def connection(self) -> Orphan:
        return self

    @property
    def cable(self) -> SessionHost:
        return self.host

    def call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        fn(*args)  # one of the no-ops below: safe from any thread

    def stream_from(
        self, stream: str, callback: StreamCallback | None = None, whisper: bool = False
    ) -> None:
        pass

    def add_timer(self, fn: Callable[[], Any], seconds: float) -> None:
        pass

    def stop_stream_from(self, stream: str) -> None:
        pass

    def open_presence(self, stream: str) -> None:
        pass

    def presence_join(self, id: str | int, info: Any) -> None:
        pass

    def presence_leave(self) -> None:
        pass

    def stop_all_streams(self) -> None:
        pass

    def transmit(self, data: Any) -> None:
        pass

    def close(self, reason: str = "remote", *, reconnect: bool = True) -> None:
        pass

    async def run_unsubscribed(self) -> None:
        """Its session expired unrestored: ``unsubscribed()``, shielded and
        bounded by ``hook_timeout``, as at any disconnect (in this task of
        the keeper's: ``current.user`` is the session's identity)."""
        channel = self.channel
        assert channel is not None
        current_user.set(self.identity)
        options = self.host.options
        timed_out = False
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = (
                trio.current_time() + options.close_timeout + options.hook_timeout
            )
            try:
                timed_out = await call_hook(
                    channel, "unsubscribed", options.hook_timeout
                )
            except Exception as exc:
                if not (await rescued(channel, exc, self.identifier, log))[0]:
                    log.exception("unsubscribed() of %s failed", self.identifier)
        if timed_out or scope.cancelled_caught:
            log.warning("unsubscribed() of %s timed out", self.identifier)
