"""The in-process hub: stream name -> local subscribers, encode-once fan-out.

A broadcast's payload is JSON-encoded once by the caller. For each
subscriber the hub hands over a frame built from that payload; subscribers
of one stream that share an identifier (every client in the same room)
share one frame string. Handing over never waits: each subscriber's
connection queues the frame without blocking, and a connection whose
bounded queue is full is dealt with by its slow-client policy, not by the
broadcaster.

A broadcast to a stream that keeps history is given its position there
first (:mod:`._history`), whether it was made here or came from another
process, and its frames carry that position; with the history kept in
Redis (:mod:`._redis_history`) the position comes with the broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ._history import HistoryStore
    from .protocol.ext import Position

__all__ = ["Hub", "HubStatistics", "Subscriber"]


class Subscriber(Protocol):
    """What the hub delivers to: one subscription of one connection."""

    identifier: str

    def deliver(
        self, payload: str, frames: dict[str, str], position: Position | None = None
    ) -> None:
        """Queue ``payload`` without blocking; ``frames`` caches frames
        built for this broadcast, keyed by the frame's head (two dialects
        may share an identifier, never a head); ``position`` is the
        broadcast's place in its stream's history (passed only to
        subscribers of streams that keep one)."""


@dataclass(frozen=True, slots=True)
class HubStatistics:
    streams: int
    subscribers: int
    broadcasts: int
    deliveries: int


class Hub:
    """Streams and their local subscribers.

    ``on_first`` and ``on_last`` are called when a stream gains its first
    local subscriber or loses its last one (the Redis bridge subscribes
    and unsubscribes its Redis channel there).

    ``control`` maps the cable's own streams (such as remote disconnect
    commands) to a handler of their payloads; they have no subscribers and
    are not counted as streams.
    """

    __slots__ = (
        "_broadcasts",
        "_deliveries",
        "_streams",
        "control",
        "history",
        "on_first",
        "on_last",
    )

    def __init__(self) -> None:
        # dicts as insertion-ordered sets: delivery order follows join order
        self._streams: dict[str, dict[Subscriber, None]] = {}
        self._broadcasts = 0
        self._deliveries = 0
        self.on_first: Callable[[str], None] | None = None
        self.on_last: Callable[[str], None] | None = None
        self.control: dict[str, Callable[[str], object]] = {}
        #: The streams' history; None while no stream keeps one.
        self.history: HistoryStore | None = None

    def add(self, stream: str, subscriber: Subscriber) -> None:
        subscribers = self._streams.get(stream)
        if subscribers is None:
            self._streams[stream] = {subscriber: None}
            if self.on_first is not None:
                self.on_first(stream)
        else:
            subscribers[subscriber] = None

    def remove(self, stream: str, subscriber: Subscriber) -> None:
        subscribers = self._streams.get(stream)
        if subscribers is None or subscriber not in subscribers:
            return
        del subscribers[subscriber]
        if not subscribers:
            del self._streams[stream]
            if self.on_last is not None:
                self.on_last(stream)

    def publish(self, stream: str, payload: str) -> int:
        """Hand an encoded payload to every local subscriber of ``stream``.

        Returns the number of subscribers it was handed to. Never blocks.
        """
        history = self.history
        position = None if history is None else history.append(stream, payload)
        return self.publish_at(stream, payload, position)

    def publish_at(self, stream: str, payload: str, position: Position | None) -> int:
        """:meth:`publish` for a broadcast positioned elsewhere (by the
        history kept in Redis), or in no history (``position`` None):
        delivered with that position, and kept in no history here."""
        self._broadcasts += 1
        subscribers = self._streams.get(stream)
        if not subscribers:
            handler = self.control.get(stream)  # off the hot path: rare
            if handler is not None:
                handler(payload)
            return 0
        frames: dict[str, str] = {}
        # A copy: a delivery may end a slow connection, which leaves streams.
        if position is None:
            for subscriber in tuple(subscribers):
                subscriber.deliver(payload, frames)
        else:
            for subscriber in tuple(subscribers):
                subscriber.deliver(payload, frames, position)
        self._deliveries += len(subscribers)
        return len(subscribers)

    def publish_except(
        self, stream: str, payload: str, sender: Subscriber | None
    ) -> int:
        """A transient message (a whisper) to every local subscriber of
        ``stream`` but ``sender`` (None: a whisper from another process):
        no history position, never stored."""
        subscribers = self._streams.get(stream)
        if not subscribers:
            return 0
        frames: dict[str, str] = {}
        handed = 0
        for subscriber in tuple(subscribers):
            if subscriber is not sender:
                subscriber.deliver(payload, frames)
                handed += 1
        self._deliveries += handed
        return handed

    def subscribers(self, stream: str) -> int:
        return len(self._streams.get(stream, ()))

    def streams(self) -> list[str]:
        return list(self._streams)

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            streams=len(self._streams),
            subscribers=sum(len(s) for s in self._streams.values()),
            broadcasts=self._broadcasts,
            deliveries=self._deliveries,
        )
