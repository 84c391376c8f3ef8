"""``stream_from`` callbacks: a subscriber between the hub and one
subscription that filters or rewrites each broadcast for it alone."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Protocol

from .protocol.codec import encode_payload

if TYPE_CHECKING:
    from ._channel import StreamCallback
    from .protocol.ext import Position
    from .protocol.server import ServerSubscription

__all__ = ["Filtered"]

log = logging.getLogger("trio_cable.connection")


class _Id(Protocol):
    @property
    def id(self) -> str: ...


class Owner(Protocol):
    """The subscription a callback filters for."""

    @property
    def identifier(self) -> str: ...
    @property
    def record(self) -> ServerSubscription: ...
    @property
    def connection(self) -> _Id: ...


class Filtered:
    """A ``stream_from`` callback between the hub and one subscription: it
    decodes each broadcast, calls the callback and encodes what it returns,
    so this subscription alone leaves the encode-once path."""

    __slots__ = ("callback", "identifier", "owner")

    def __init__(self, owner: Owner, callback: StreamCallback) -> None:
        self.owner = owner
        self.identifier = owner.identifier
        self.callback = callback

    def deliver(
        self, payload: str, frames: dict[str, str], position: Position | None = None
    ) -> None:
        record = self.owner.record
        if record.closed:
            return
        try:
            out = self.callback(json.loads(payload))
            if out is None:
                return  # filtered out
            encoded = encode_payload(out)
        except Exception:
            log.exception(
                "conn %s: the stream_from callback of %s failed",
                self.owner.connection.id,
                self.identifier,
            )
            return
        # A frame of its own, not the shared one (at the same position).
        record.deliver(encoded, {}, position)
