"""The broker seam: where broadcasts go beyond this process.

The hub delivers every broadcast to this process's subscribers; a
:class:`Broker` carries it to the other processes and brings theirs in.
:class:`InProcessBroker` is the broker of a single process (it has nothing
to carry); :class:`~trio_cable._redis.RedisBridge` carries them through
Redis, and :class:`~trio_cable._redis_history.RedisHistoryBridge`, the one
a cable runs with, adds the history kept in Redis and whispers. The cable
talks to whichever it runs with the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final, Protocol

import trio

from ._history import HistoryConfig, HistoryStore
from ._redis import BridgeStatistics
from ._redis_history import RedisHistoryBridge

if TYPE_CHECKING:
    from ._history import Replay
    from ._hub import Hub
    from ._options import CableOptions
    from .protocol.ext import HistoryRequest

__all__ = ["IN_PROCESS", "Broker", "InProcessBroker", "open_broker", "redis_url"]


class Broker(Protocol):
    """What a cable needs of its cross-process transport of broadcasts."""

    def publish(self, stream: str, payload: str) -> bool:
        """Carry a local broadcast to the other processes; never blocks.

        True when the broker positions it in a history shared by every
        process (kept in Redis) and delivers it here too, once positioned;
        False when the hub is to deliver it here now."""

    def whisper(self, stream: str, payload: str) -> None:
        """Carry a whisper to the other processes' subscribers of ``stream``."""

    async def read_history(
        self,
        history: HistoryStore | None,
        streams: Iterable[str],
        request: HistoryRequest,
    ) -> Replay | None:
        """What a client missed of ``streams`` (the hub's ``history`` says
        which streams keep one); None if it is gone."""

    async def wait_for_room(self) -> None:
        """Backpressure for ``await cable.broadcast()``: wait while the
        broker's buffer is full."""

    def stream_wanted(self, stream: str) -> None:
        """This process gained its first subscriber to ``stream``."""

    def stream_unwanted(self, stream: str) -> None:
        """This process lost its last subscriber to ``stream``."""

    async def streams_live(self, streams: Iterable[str]) -> None:
        """Wait until broadcasts to ``streams`` from anywhere reach us."""

    def statistics(self) -> BridgeStatistics | None:
        """Its health and counters, or None if it has none."""

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The broker's background work, in the cable's nursery."""


class InProcessBroker:
    """The broker of a cable alone in its process: the hub does it all."""

    __slots__ = ()

    def publish(self, stream: str, payload: str) -> bool:
        return False

    def whisper(self, stream: str, payload: str) -> None:
        pass

    async def read_history(
        self,
        history: HistoryStore | None,
        streams: Iterable[str],
        request: HistoryRequest,
    ) -> Replay | None:
        await trio.lowlevel.checkpoint()
        if history is None:  # nothing kept: any position is unknown
            history = HistoryStore(HistoryConfig())
        return history.read(streams, request)

    async def wait_for_room(self) -> None:
        pass

    def stream_wanted(self, stream: str) -> None:
        pass

    def stream_unwanted(self, stream: str) -> None:
        pass

    async def streams_live(self, streams: Iterable[str]) -> None:
        pass

    def statistics(self) -> None:
        return None

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()


IN_PROCESS: Final = InProcessBroker()


def open_broker(hub: Hub, options: CableOptions) -> Broker:
    """The broker a cable with ``options`` runs with: Redis if it has a
    ``redis_url`` (or the ``TRIO_CABLE_REDIS_URL`` environment variable
    is set as it starts), else in-process."""
    url = redis_url(options)
    if url is None:
        return IN_PROCESS
    return RedisHistoryBridge(
        hub, url, prefix=options.redis_prefix, max_buffer=options.redis_buffer
    )


def redis_url(options: CableOptions) -> str | None:
    """The Redis a cable starting now uses: its ``redis_url``, else the
    ``TRIO_CABLE_REDIS_URL`` environment variable; None: none."""
    return options.redis_url or os.environ.get("TRIO_CABLE_REDIS_URL") or None
