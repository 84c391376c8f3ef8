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
    Limits,
    Ref,
    decode_frame,
    encode_confirm,
    encode_disconnect,
    encode_error,
    encode_ping,
    encode_reject,
    encode_reply,
    encode_reply_error,
    encode_welcome,
    message_prefix,
    parse_command,
)
from .ext import (
    EXT_PROTOCOL,
    ExtCommand,
    encode_history_result,
    encode_welcome_ext,
    parse_ext_frame,
)
from .guide import ProperChannelsV1JSON
from .presence import PRESENCE_COMMANDS, parse_presence

__all__ = [
    "ACTIONCABLE_V1_EXT_JSON",
    "ACTIONCABLE_V1_JSON",
    "DIALECTS",
    "PROPER_CHANNELS_V1_JSON",
    "ActionCableV1ExtJSON",
    "ActionCableV1JSON",
    "Dialect",
    "ProperChannelsV1JSON",
    "choose_dialect",
    "speakable",
]


class Dialect(Protocol):
    """Parsing of client frames and encoding of server frames."""

    @property
    def subprotocol(self) -> str:
        """The subprotocol name that selects this dialect."""
        ...

    @property
    def extended(self) -> bool:
        """AnyCable's extensions: session ids, history, pongs."""
        ...

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> ExtCommand:
        """A client frame as a command; raises ``ProtocolError``."""
        ...

    @property
    def pings(self) -> bool:
        """Whether connections speaking it get the cable's ``ping`` frames."""
        ...

    def welcome(
        self, sid: str = "", restored_ids: list[str] | None = None
    ) -> str | None:
        """The frame that opens a connection (None: the dialect has none);
        the extended dialect adds the session id."""
        ...

    def history_result(self, identifier: str, *, ok: bool) -> str:
        """``confirm_history`` or ``reject_history`` (extended only)."""
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

    @property
    def extended(self) -> bool:
        return False

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> ExtCommand:
        frame = decode_frame(text)
        # AnyCable's presence commands, as an extension: Rails' clients
        # never send them, ours (and a consumer's send()) may.
        command = frame.get("command")
        if isinstance(command, str) and command in PRESENCE_COMMANDS:
            return parse_presence(frame, limits)
        return parse_command(frame, limits)

    def welcome(
        self, sid: str = "", restored_ids: list[str] | None = None
    ) -> str | None:
        return encode_welcome()

    def history_result(self, identifier: str, *, ok: bool) -> str:
        # Never asked: plain clients cannot request history.
        return encode_history_result(identifier, ok=ok)

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


class ActionCableV1ExtJSON(ActionCableV1JSON):
    """``actioncable-v1-ext-json``: AnyCable's extended protocol (session
    ids, stream history and recovery, pongs; see :mod:`.ext`)."""

    __slots__ = ()

    @property
    def subprotocol(self) -> str:
        return EXT_PROTOCOL

    @property
    def extended(self) -> bool:
        return True

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> ExtCommand:
        return parse_ext_frame(text, limits)

    def welcome(
        self, sid: str = "", restored_ids: list[str] | None = None
    ) -> str | None:
        return encode_welcome_ext(sid, restored_ids)


ACTIONCABLE_V1_JSON: Final = ActionCableV1JSON()
ACTIONCABLE_V1_EXT_JSON: Final = ActionCableV1ExtJSON()
#: The reference Channels guide's frames (see :mod:`.guide`).
PROPER_CHANNELS_V1_JSON: Final = ProperChannelsV1JSON()

#: Every dialect this server speaks, by subprotocol, best first: a client
#: offering several gets the best of its offer.
DIALECTS: Final[dict[str, Dialect]] = {
    ACTIONCABLE_V1_EXT_JSON.subprotocol: ACTIONCABLE_V1_EXT_JSON,
    ACTIONCABLE_V1_JSON.subprotocol: ACTIONCABLE_V1_JSON,
    PROPER_CHANNELS_V1_JSON.subprotocol: PROPER_CHANNELS_V1_JSON,
}


def choose_dialect(
    offered: list[str] | tuple[str, ...], *, extended: bool = True
) -> tuple[str | None, Dialect | None]:
    """The subprotocol to accept and the dialect to speak.

    The best dialect the client offered wins (the extended one first,
    unless ``extended`` is false). A client that offers no subprotocol
    at all is spoken to in ``actioncable-v1-json`` with none selected (some
    clients never offer one). A client that offers only subprotocols we
    do not speak gets ``(None, None)``: the handshake must be refused,
    since it would fail on the client's side anyway.
    """
    for proto, dialect in DIALECTS.items():
        if proto in offered and (extended or not dialect.extended):
            return proto, dialect
    if not offered:
        return None, ACTIONCABLE_V1_JSON
    return None, None


def speakable(extended: bool = True) -> list[str]:
    """The subprotocols a server speaks, best first."""
    return [p for p, d in DIALECTS.items() if extended or not d.extended]
