"""Sans-I/O core of the ``actioncable-v1-json`` protocol.

Client frames go in as text and come out as typed commands; server frames
are built as ready-to-send text. Nothing here touches a socket, a clock or
an event loop, so every rule of the protocol is testable on its own.

The identifier a client sends is kept as the exact string it sent: the
official client matches frames to subscriptions by comparing that string
with ``===``, and clients serialise params in different key orders, so the
server echoes it byte for byte and never re-serialises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import ProtocolError

__all__ = [
    "DEFAULT_LIMITS",
    "PROTOCOL",
    "SUPPORTED_PROTOCOLS",
    "Command",
    "Limits",
    "Message",
    "Ref",
    "Subscribe",
    "Unsubscribe",
    "check_depth",
    "decode_frame",
    "decode_json",
    "dumps",
    "encode_confirm",
    "encode_disconnect",
    "encode_error",
    "encode_message",
    "encode_ping",
    "encode_reject",
    "encode_reply",
    "encode_reply_error",
    "encode_welcome",
    "message_prefix",
    "parse_command",
    "parse_frame",
    "parse_ref",
    "select_subprotocol",
]

#: The subprotocol this server speaks.
PROTOCOL: Final = "actioncable-v1-json"
#: What the official client offers; it closes for good unless we pick ours.
SUPPORTED_PROTOCOLS: Final = (PROTOCOL,)

_checked_utf8 = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
# JSONEncoder.encode builds a C encoder at each call, most of the cost of
# a small payload (2.9 against 0.7 µs for {"name": "member"}): one serves
# every call. It keeps no circular-reference markers (so no state between
# calls, nor threads); a cycle recurses to RecursionError, and then the
# checking encoder says what is wrong as it always did.
try:
    from _json import encode_basestring, make_encoder
except ImportError:  # (no C accelerator: the checking encoder alone)
    _iterencode = None
else:
    _iterencode = make_encoder(
        None, json.JSONEncoder().default, encode_basestring,
        None, ":", ",", False, False, False,
    )  # fmt: skip


def _dumps_utf8(value: Any) -> str:
    if _iterencode is None:
        return _checked_utf8(value)
    try:
        return "".join(_iterencode(value, 0))
    except RecursionError:
        return _checked_utf8(value)


_dumps_ascii = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON; echoing them back would fail later.
    raise ValueError(f"{name} is not valid JSON")


#: One decoder for every client frame: ``json.loads`` with any option
#: builds a decoder (and its scanner) per call, which cost as much as the
#: decoding of a subscribe frame itself.
_decode = json.JSONDecoder(parse_constant=_no_constants).decode


def _loads(text: str | bytes) -> Any:
    """``json.loads(text, parse_constant=_no_constants)``, sooner."""
    if not isinstance(text, str):  # as json.loads reads bytes
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    return _decode(text)


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8 where it can be (the server's one encoder)."""
    return _dumps(value)


def _dumps(value: Any) -> str:
    text = _dumps_utf8(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates (a client's "\ud800" escape) cannot be sent
            # as UTF-8 and would crash the writer: escape them, as JSON allows.
            return _dumps_ascii(value)
    return text


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``{"command":"subscribe"}``: start a subscription."""

    identifier: str
    channel: str
    params: dict[str, Any] = field(hash=False)
    #: What the client asked to be replayed (the extended dialect's
    #: ``history``, a :class:`~trio_cable.protocol.ext.HistoryRequest`).
    history: Any = field(default=None, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``{"command":"unsubscribe"}``: end a subscription."""

    identifier: str


#: The tag of a call that wants a reply: what the client sent as ``ref``.
Ref = int | str

#: Longest string ``ref`` accepted (a counter or a short id is plenty).
MAX_REF_LENGTH: Final = 64


@dataclass(frozen=True, slots=True)
class Message:
    """``{"command":"message"}``: perform ``action`` with ``data``.

    ``data`` is the decoded ``data`` object, ``action`` key included (as Rails
    passes it); ``action`` is ``"receive"`` when the client sent none.
    ``ref`` is set when the client asked for the action's reply (a call),
    ``None`` otherwise (the official client never asks).
    """

    identifier: str
    action: str
    data: dict[str, Any] = field(hash=False)
    ref: Ref | None = None


def parse_ref(value: Any, identifier: str | None) -> Ref | None:
    """A frame's ``ref``: absent (``None``), an integer, or a short string.

    Raises:
        ProtocolError: ``invalid_request`` for anything else.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if -(2**53) < value < 2**53:  # exact in a JavaScript number
            return value
    elif isinstance(value, str) and len(value) <= MAX_REF_LENGTH:
        return value
    raise ProtocolError(
        "invalid_request",
        f"ref must be an integer or a string of at most {MAX_REF_LENGTH} characters",
        identifier,
    )


Command = Subscribe | Unsubscribe | Message


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes in UTF-8 (what the wire carries), not characters."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def brief(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: error messages name what
    a client sent without echoing all of it back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode_json(text: str | bytes, what: str, identifier: str | None) -> Any:
    try:
        return _loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and UnicodeDecodeError; deep
        # nesting ends in RecursionError inside the stdlib parser.
        raise ProtocolError(
            "invalid_json", f"{what} is not valid JSON: {exc}", identifier
        ) from None


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits the parser enforces (see :class:`~trio_cable.Cable`)."""

    max_identifier_bytes: int = 1024
    max_json_depth: int = 16


DEFAULT_LIMITS: Final = Limits()


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of decoded JSON, counting no further than ``limit + 1``."""
    depth = 0
    level: list[Any] = [value]
    while level and depth <= limit:
        children: list[Any] = []
        for item in level:
            if isinstance(item, dict):
                children.extend(item.values())
            elif isinstance(item, list):
                children.extend(item)
        if not children and not any(isinstance(i, dict | list) for i in level):
            break
        depth += 1
        level = children
    return depth


def check_depth(value: Any, what: str, limits: Limits, identifier: str) -> None:
    if type(value) is dict and limits.max_json_depth >= 1:
        # Most params and data are one flat object: depth 1, no walk.
        for item in value.values():
            if isinstance(item, dict | list):
                break
        else:
            return
    if json_depth(value, limits.max_json_depth) > limits.max_json_depth:
        raise ProtocolError(
            "json_too_deep",
            f"{what} nests deeper than {limits.max_json_depth} levels",
            identifier,
        )


def parse_frame(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Command:
    """Parse one client frame into a :data:`Command`.

    Raises:
        ProtocolError: with ``reason`` ``invalid_json`` (not JSON, or
            ``identifier``/``data`` not JSON objects), ``unknown_command``
            (missing or unknown ``command``), ``invalid_request`` (fields
            missing or of the wrong type), ``identifier_too_large`` or
            ``json_too_deep`` (past ``limits``). ``identifier`` on the
            error is set whenever the frame named one, unless it was
            over the limit (an error never echoes it back).
    """
    return parse_command(decode_frame(text), limits)


def decode_frame(text: str | bytes) -> dict[str, Any]:
    """A client frame's JSON object (``ProtocolError`` if it is none)."""
    frame = decode_json(text, "frame", None)
    if not isinstance(frame, dict):
        raise ProtocolError("invalid_json", "frame must be a JSON object")
    return frame


def parse_command(frame: dict[str, Any], limits: Limits = DEFAULT_LIMITS) -> Command:
    """A decoded client frame as a :data:`Command` (see :func:`parse_frame`)."""
    identifier = frame.get("identifier")
    ident = identifier if isinstance(identifier, str) else None
    # Every command that names an identifier, before anything echoes it.
    if ident is not None and utf8_size(ident) > limits.max_identifier_bytes:
        raise ProtocolError(
            "identifier_too_large",
            f"identifiers are limited to {limits.max_identifier_bytes} bytes",
        )
    command = frame.get("command")
    if command not in ("subscribe", "unsubscribe", "message"):
        raise ProtocolError(
            "unknown_command", f"unknown command {brief(command)}", ident
        )
    if ident is None:
        raise ProtocolError(
            "invalid_request", "identifier must be a JSON-encoded string"
        )
    if command == "unsubscribe":
        return Unsubscribe(ident)
    if command == "subscribe":
        channel, params = parse_identifier(ident)
        check_depth(params, "identifier", limits, ident)
        return Subscribe(ident, channel, params)
    raw = frame.get("data")
    if not isinstance(raw, str):
        raise ProtocolError(
            "invalid_request", "data must be a JSON-encoded string", ident
        )
    data = decode_json(raw, "data", ident)
    check_depth(data, "data", limits, ident)
    if not isinstance(data, dict):
        raise ProtocolError("invalid_json", "data must encode an object", ident)
    action = data.get("action", "receive")
    if not isinstance(action, str):
        raise ProtocolError("invalid_action", "action must be a string", ident)
    return Message(ident, action, data, parse_ref(frame.get("ref"), ident))


def parse_identifier(identifier: str) -> tuple[str, dict[str, Any]]:
    """Split an identifier into its channel name and its params."""
    decoded = decode_json(identifier, "identifier", identifier)
    if not isinstance(decoded, dict):
        raise ProtocolError(
            "invalid_request", "identifier must encode an object", identifier
        )
    channel = decoded.pop("channel", None)
    if not isinstance(channel, str) or not channel:
        raise ProtocolError(
            "invalid_request", "identifier needs a string 'channel'", identifier
        )
    return channel, decoded


def select_subprotocol(offered: list[str] | tuple[str, ...]) -> str | None:
    """The subprotocol to accept from the client's offer, if any."""
    for proto in offered:
        if proto in SUPPORTED_PROTOCOLS:
            return proto
    return None


# -- server frames ----------------------------------------------------------

_WELCOME: Final = '{"type":"welcome"}'


def encode_welcome() -> str:
    return _WELCOME


def encode_ping(timestamp: int) -> str:
    return f'{{"type":"ping","message":{int(timestamp)}}}'


def encode_confirm(identifier: str) -> str:
    return f'{{"identifier":{_dumps(identifier)},"type":"confirm_subscription"}}'


def encode_reject(
    identifier: str, reason: str | None = None, message: str | None = None
) -> str:
    """A rejection; ``reason`` (e.g. ``unknown_channel``) and ``message``
    (what went wrong, for people) are informational: clients that do not
    know them ignore them."""
    if reason is None:
        return f'{{"identifier":{_dumps(identifier)},"type":"reject_subscription"}}'
    explained = "" if message is None else f',"message":{_dumps(message)}'
    return (
        f'{{"identifier":{_dumps(identifier)},"type":"reject_subscription",'
        f'"reason":{_dumps(reason)}{explained}}}'
    )


def encode_disconnect(reason: str, *, reconnect: bool) -> str:
    # Always carry ``reconnect``: the official client reads a missing one
    # as false and would stop reconnecting.
    flag = "true" if reconnect else "false"
    return f'{{"type":"disconnect","reason":{_dumps(reason)},"reconnect":{flag}}}'


def encode_error(reason: str, message: str, identifier: str | None = None) -> str:
    """An error report that no subscription's ``received`` callback sees.

    The frame's own ``identifier`` is the empty string, which no
    subscription can have (identifiers encode objects): the official client
    looks subscriptions up by that string, finds none and ignores the frame.
    Leaving the key out would make it call ``received`` on ``undefined`` and
    throw. The identifier the error is about travels as ``about``.
    """
    frame: dict[str, Any] = {
        "type": "error",
        "identifier": "",
        "reason": reason,
        "message": message,
    }
    if identifier is not None:
        frame["about"] = identifier
    return _dumps(frame)


def encode_reply(identifier: str, ref: Ref, result: str) -> str:
    """The reply to a call: ``result`` is the action's encoded return value.

    Typed ``reply``, so the official client (which never asks for one)
    would hand it to ``received`` like any extension's frame; it never
    gets one because it never sends a ``ref``.
    """
    return (
        f'{{"identifier":{_dumps(identifier)},"type":"reply",'
        f'"ref":{_dumps(ref)},"result":{result}}}'
    )


def encode_error_object(reason: str, message: str) -> str:
    return f'{{"reason":{_dumps(reason)},"message":{_dumps(message)}}}'


def encode_reply_error(identifier: str, ref: Ref, reason: str, message: str) -> str:
    """The failed reply to a call: why (``reason``) and what (``message``)."""
    return (
        f'{{"identifier":{_dumps(identifier)},"type":"reply",'
        f'"ref":{_dumps(ref)},"error":{encode_error_object(reason, message)}}}'
    )


def encode_payload(data: Any) -> str:
    """JSON-encode a transmit/broadcast payload once, for many frames."""
    return _dumps(data)


def message_prefix(identifier: str) -> str:
    """The constant head of every data frame of one subscription."""
    return f'{{"identifier":{_dumps(identifier)},"message":'


def encode_message(identifier: str, payload: str) -> str:
    """A data frame; ``payload`` is already-encoded JSON."""
    return message_prefix(identifier) + payload + "}"
