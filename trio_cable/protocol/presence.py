"""Presence on the wire, sans-I/O: the commands and the frames.

The commands are AnyCable's (``@anycable/web``'s ``channel.presence``):

* ``{"command":"join","identifier":…,"presence":{"id":"<id>","info":<any>}}``
* ``{"command":"leave","identifier":…}``
* ``{"command":"presence","identifier":…,"data":{}}``: the member list.

They are accepted in ``actioncable-v1-ext-json`` and, as an extension, in
``actioncable-v1-json`` (a plain client sends them with the consumer's
``send``; cable.js and the Python client do).

Events (``{"type":"join","id":…,"info":…}``, ``{"type":"leave","id":…}``)
and the member list (``{"type":"info","total":n,"records":[…]}``) reach
an extended client as AnyCable's ``presence`` frame
(``{"type":"presence","identifier":…,"message":<event>}``) and a plain
one as an ordinary message of the subscription:
``{"identifier":…,"message":{"presence":<event>}}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .._errors import ProtocolError
from .codec import DEFAULT_LIMITS, Limits, check_depth, dumps, utf8_size

__all__ = [
    "MAX_PRESENCE_ID",
    "PRESENCE_COMMANDS",
    "PresenceCommand",
    "PresenceInfo",
    "PresenceJoin",
    "PresenceLeave",
    "encode_info",
    "encode_join",
    "encode_leave",
    "parse_presence",
    "presence_frame",
]

#: Longest presence id, in characters.
MAX_PRESENCE_ID: Final = 256

#: The commands of presence.
PRESENCE_COMMANDS: Final = frozenset({"join", "leave", "presence"})


@dataclass(frozen=True, slots=True)
class PresenceJoin:
    """``join``: the client is ``id`` here, described by ``info`` (encoded)."""

    identifier: str
    id: str
    info: str


@dataclass(frozen=True, slots=True)
class PresenceLeave:
    """``leave``: the client is no longer here."""

    identifier: str


@dataclass(frozen=True, slots=True)
class PresenceInfo:
    """``presence``: the client asks who is here."""

    identifier: str


PresenceCommand = PresenceJoin | PresenceLeave | PresenceInfo


def presence_id(value: Any, identifier: str | None = None) -> str:
    """A presence id as a string (numbers are spelt out); anything else,
    an empty one or one over :data:`MAX_PRESENCE_ID` is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_PRESENCE_ID:
        raise ProtocolError(
            "invalid_request",
            f"a presence id is a string of 1 to {MAX_PRESENCE_ID} characters",
            identifier,
        )
    return value


def parse_presence(
    frame: dict[str, Any], limits: Limits = DEFAULT_LIMITS
) -> PresenceCommand:
    """A decoded ``join``, ``leave`` or ``presence`` frame as its command.

    Raises:
        ProtocolError: ``invalid_request`` for a frame without a string
            identifier, a join without an object ``presence`` or with a
            bad id, or info that is not JSON.
    """
    command = frame.get("command")
    identifier = frame.get("identifier")
    if not isinstance(identifier, str):
        raise ProtocolError(
            "invalid_request", "identifier must be a JSON-encoded string"
        )
    if utf8_size(identifier) > limits.max_identifier_bytes:
        raise ProtocolError(
            "identifier_too_large",
            f"identifiers are limited to {limits.max_identifier_bytes} bytes",
        )
    if command == "leave":
        return PresenceLeave(identifier)
    if command == "presence":
        return PresenceInfo(identifier)
    raw = frame.get("presence")
    if not isinstance(raw, dict):
        raise ProtocolError(
            "invalid_request",
            'a join needs "presence": {"id": …, "info": …}',
            identifier,
        )
    check_depth(raw.get("info"), "presence info", limits, identifier)
    try:
        info = dumps(raw.get("info"))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            "invalid_request", f"presence info: {exc}", identifier
        ) from None
    return PresenceJoin(identifier, presence_id(raw.get("id"), identifier), info)


def encode_join(id: str, info: str) -> str:
    """A join event; ``info`` is encoded JSON."""
    return f'{{"type":"join","id":{dumps(id)},"info":{info}}}'


def encode_leave(id: str) -> str:
    """A leave event."""
    return f'{{"type":"leave","id":{dumps(id)}}}'


def encode_info(records: dict[str, str]) -> str:
    """The member list: ``records`` maps each id to its encoded info."""
    body = ",".join(
        f'{{"id":{dumps(id)},"info":{info}}}' for id, info in records.items()
    )
    return f'{{"type":"info","total":{len(records)},"records":[{body}]}}'


def presence_frame(extended: bool, prefix: str, identifier: str, event: str) -> str:
    """The frame carrying ``event`` (encoded) to one subscription: AnyCable's
    ``presence`` frame in the ``extended`` dialect, else an ordinary message
    ``{"presence": event}`` after the dialect's message ``prefix`` (so a
    plain client's ``received`` gets it)."""
    if extended:
        return (
            f'{{"type":"presence","identifier":{dumps(identifier)},"message":{event}}}'
        )
    return f'{prefix}{{"presence":{event}}}}}'
