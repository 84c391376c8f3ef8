"""A subscription's presence, as its consumer sees it: join, leave, the
member list, and callbacks for joins and leaves (see docs/presence.md).

The server's presence events arrive as AnyCable's ``presence`` frames
(``actioncable-v1-ext-json``; the client protocol reads them in the plain
shape) or as ordinary messages ``{"presence": <event>}``
(``actioncable-v1-json``); they are taken out of the message stream here
and become :class:`~trio_cable.client.PresenceChanged` events.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._errors import ClientError
from ..protocol.client import encode_presence_command
from ._events import PresenceChanged

__all__ = ["ClientPresence", "presence_payload"]

log = logging.getLogger("trio_cable.client")

#: ``callback(id, info)`` for a join, ``callback(id, None)`` for a leave.
PresenceCallback = Callable[[str, Any], object]


def presence_payload(data: Any) -> dict[str, Any] | None:
    """The presence event or list a message carries, or None for data."""
    if isinstance(data, dict) and len(data) == 1:
        inner = data.get("presence")
        if isinstance(inner, dict) and isinstance(inner.get("type"), str):
            return inner
    return None


class ClientPresence:
    """``subscription.presence``: join, leave, ask who is here, and hear
    who joins and leaves. The channel must track presence on its stream
    (``stream_from(stream, presence=True)``)."""

    def __init__(
        self,
        identifier: str,
        send: Callable[[str], Awaitable[None]],
        timeout: float,
    ) -> None:
        self._identifier = identifier
        self._send = send
        self._timeout = timeout
        self._members: dict[str, Any] | None = None
        self._listed: trio.Event | None = None
        self._on_join: list[PresenceCallback] = []
        self._on_leave: list[PresenceCallback] = []

    async def join(self, id: str | int, info: Any = None) -> None:
        """Be member ``id`` with ``info`` (any JSON). Waits, if need be,
        until connected and confirmed, as ``perform`` does."""
        frame = encode_presence_command(
            self._identifier, "join", {"id": str(id), "info": info}
        )
        await self._send(frame)

    async def leave(self) -> None:
        """Stop being a member (at once)."""
        await self._send(encode_presence_command(self._identifier, "leave"))

    async def info(self) -> dict[str, Any]:
        """Every member: id -> info. Asks the server once, then keeps the
        list up to date from the join and leave events.

        Raises:
            ClientError: the channel tracks no presence, or no list came
                within the client's answer timeout.
        """
        if self._members is not None:
            return dict(self._members)
        if self._listed is None:
            self._listed = trio.Event()
            await self._send(encode_presence_command(self._identifier, "presence"))
        listed = self._listed
        with trio.move_on_after(self._timeout):
            await listed.wait()
        members = self.members  # (read anew: the wait may have set it)
        if members is None:
            self._listed = None
            raise ClientError(f"no presence list for {self._identifier}")
        return members

    @property
    def members(self) -> dict[str, Any] | None:
        """The members as last known (None: never asked for, or the
        connection was lost since)."""
        return None if self._members is None else dict(self._members)

    def on_join(self, callback: PresenceCallback) -> PresenceCallback:
        """Call ``callback(id, info)`` for each join (a decorator)."""
        self._on_join.append(callback)
        return callback

    def on_leave(self, callback: PresenceCallback) -> PresenceCallback:
        """Call ``callback(id, None)`` for each leave (a decorator)."""
        self._on_leave.append(callback)
        return callback

    def handle(self, payload: dict[str, Any]) -> PresenceChanged | None:
        """A presence frame's payload: the event for the consumer, or None
        (a member list, an error)."""
        kind = payload["type"]
        if kind == "info":
            records = payload.get("records") or []
            self._members = {str(r.get("id")): r.get("info") for r in records}
            if self._listed is not None:
                self._listed.set()
            return None
        if kind not in ("join", "leave"):
            # {"type": "error"}: the channel tracks no presence; info()
            # raises at once instead of waiting.
            if self._listed is not None:
                self._listed.set()
            return None
        id, info = str(payload.get("id")), payload.get("info")
        if self._members is not None:
            if kind == "join":
                self._members[id] = info
            else:
                self._members.pop(id, None)
        for callback in self._on_join if kind == "join" else self._on_leave:
            try:
                callback(id, info)
            except Exception:
                log.exception("%s: presence callback failed", self._identifier)
        return PresenceChanged(kind, id, info)

    def reset(self) -> None:
        """The connection was lost: the list is asked for again."""
        self._members = None
