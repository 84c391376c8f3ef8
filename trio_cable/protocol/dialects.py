"""Wire dialects: how commands are read and server frames written.

A dialect is chosen per connection by the subprotocol the client offers
(:func:`choose_dialect`). Everything that depends on the wire format goes
through the chosen :class:`Dialect`, so a second dialect (AnyCable's
``actioncable-v1-ext-json``, or another) is one more class registered in
:data:`DIALECTS`, not branches across the server.
"""

from __future__ import annotations

from typing import Final, Protocol

from .codec import (
    DEFAULT_LIMITS,
    PROTOCOL,
    Command,
    Limits,
    Ref,
    encode_confirm,
    encode_disconnect,
    encode_error,
    encode_ping,
    encode_reject,
    encode_reply,
    encode_reply_error,
    encode_welcome,
    message_prefix,
    parse_frame,
)
from .guide import ProperChannelsV1JSON

__all__ = [
    "ACTIONCABLE_V1_JSON",
    "DIALECTS",
    "PROPER_CHANNELS_V1_JSON",
    "ActionCableV1JSON",
    "Dialect",
    "ProperChannelsV1JSON",
    "choose_dialect",
]


class Dialect(Protocol):
    """Parsing of client frames and encoding of server frames."""

    @property
    def subprotocol(self) -> str:
        """The subprotocol name that selects this dialect."""
        ...

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> Command:
        """A client frame as a command; raises ``ProtocolError``."""
        ...

    @property
    def pings(self) -> bool:
        """Whether connections speaking it get the cable's ``ping`` frames."""
        ...

    def welcome(self) -> str | None:
        """The frame that opens a connection (None: the dialect has none)."""
        ...

    def ping(self, timestamp: int) -> str: ...

    def confirm(self, identifier: str) -> str: ...

    def reject(
        self, identifier: str, reason: str | None = None, message: str | None = None
    ) -> str: ...

    def disconnect(self, reason: str, *, reconnect: bool) -> str: ...

    def error(self, reason: str, message: str, identifier: str | None = None) -> str:
        """A protocol error report no subscription's callback sees."""
        ...

    def message_prefix(self, identifier: str) -> str:
        """The head of a data frame; the frame is head + payload + ``}``."""
        ...

    def reply(self, identifier: str, ref: Ref, result: str) -> str:
        """The answer to a call tagged ``ref``: ``result`` is encoded JSON."""
        ...

    def reply_error(self, identifier: str, ref: Ref, reason: str, message: str) -> str:
        """The failed answer to a call tagged ``ref``."""
        ...


class ActionCableV1JSON:
    """``actioncable-v1-json``: the Rails Action Cable protocol."""

    __slots__ = ()

    @property
    def subprotocol(self) -> str:
        return PROTOCOL

    @property
    def pings(self) -> bool:
        return True

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> Command:
        return parse_frame(text, limits)

    def welcome(self) -> str | None:
        return encode_welcome()

    def ping(self, timestamp: int) -> str:
        return encode_ping(timestamp)

    def confirm(self, identifier: str) -> str:
        return encode_confirm(identifier)

    def reject(
        self, identifier: str, reason: str | None = None, message: str | None = None
    ) -> str:
        return encode_reject(identifier, reason, message)

    def disconnect(self, reason: str, *, reconnect: bool) -> str:
        return encode_disconnect(reason, reconnect=reconnect)

    def error(self, reason: str, message: str, identifier: str | None = None) -> str:
        return encode_error(reason, message, identifier)

    def message_prefix(self, identifier: str) -> str:
        return message_prefix(identifier)

    def reply(self, identifier: str, ref: Ref, result: str) -> str:
        return encode_reply(identifier, ref, result)

    def reply_error(self, identifier: str, ref: Ref, reason: str, message: str) -> str:
        return encode_reply_error(identifier, ref, reason, message)


ACTIONCABLE_V1_JSON: Final = ActionCableV1JSON()
#: The reference Channels guide's frames (see :mod:`.guide`).
PROPER_CHANNELS_V1_JSON: Final = ProperChannelsV1JSON()

#: Every dialect this server speaks, by subprotocol. A client offering
#: several gets the first of its offer that is here.
DIALECTS: Final[dict[str, Dialect]] = {
    ACTIONCABLE_V1_JSON.subprotocol: ACTIONCABLE_V1_JSON,
    PROPER_CHANNELS_V1_JSON.subprotocol: PROPER_CHANNELS_V1_JSON,
}


def choose_dialect(offered: list[str] | tuple[str, ...]) -> tuple[str | None, Dialect]:
    """The subprotocol to accept from the client's offer (None: none of
    ours), and the dialect to speak: ``actioncable-v1-json`` when the
    client offered nothing we know (it may still speak it)."""
    for proto in offered:
        dialect = DIALECTS.get(proto)
        if dialect is not None:
            return proto, dialect
    return None, ACTIONCABLE_V1_JSON
