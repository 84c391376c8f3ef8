"""``proper-channels-v1-json``: the frames of the reference Channels guide.

The "Real-Time Updates (Channels)" guide defines its own wire format: a
subscription is named by ``channel`` and ``params`` (objects, not a JSON
string), actions travel as ``action`` and ``data``, and every server frame
has a ``type``::

    {"command":"subscribe","channel":"ChatChannel","params":{"room":"general"}}
    {"command":"message","channel":"ChatChannel","params":{...},"action":"speak","data":{...}}
    {"command":"unsubscribe","channel":"ChatChannel","params":{...}}

    {"type":"confirm_subscription","channel":"ChatChannel","params":{...}}
    {"type":"reject_subscription","channel":"ChatChannel","params":{...}}
    {"type":"message","channel":"ChatChannel","params":{...},"data":{...}}
    {"type":"error","reason":"not_subscribed","message":"..."}

It has no welcome and no pings (the guide's clients expect neither). The
rest of the server sees what it sees from ``actioncable-v1-json``: the
identifier of a subscription is ``{"channel":...,...params}`` with sorted
keys (so the same params in any key order are one subscription), and an
action's data carries its ``action`` key, as Rails passes it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Final

from .._errors import ProtocolError
from .codec import (
    DEFAULT_LIMITS,
    Command,
    Limits,
    Message,
    Ref,
    Subscribe,
    Unsubscribe,
    check_depth,
    decode_json,
    encode_disconnect,
    encode_error_object,
    encode_payload,
    encode_ping,
    parse_identifier,
    parse_ref,
)

__all__ = ["GUIDE_SUBPROTOCOL", "ProperChannelsV1JSON", "guide_identifier"]

#: The subprotocol a client offers to speak the guide's frames.
GUIDE_SUBPROTOCOL: Final = "proper-channels-v1-json"

_COMMANDS: Final = ("subscribe", "unsubscribe", "message")

_canonical_utf8 = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode
_canonical_ascii = json.JSONEncoder(
    separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def _canonical(value: Any) -> str:
    text = _canonical_utf8(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800" from a client) cannot go out as
            # UTF-8: escape it, as encode_payload does.
            return _canonical_ascii(value)
    return text


def guide_identifier(channel: str, params: dict[str, Any]) -> str:
    """The identifier the server uses for ``channel`` with ``params``."""
    return _canonical({**params, "channel": channel})


def _address(identifier: str) -> str:
    """``"channel":...,"params":{...}``: how the guide's frames name a
    subscription (from the identifier, which this dialect made)."""
    channel, params = parse_identifier(identifier)
    return f'"channel":{encode_payload(channel)},"params":{_canonical(params)}'


class ProperChannelsV1JSON:
    """``proper-channels-v1-json``: the reference Channels guide's frames."""

    __slots__ = ()

    @property
    def subprotocol(self) -> str:
        return GUIDE_SUBPROTOCOL

    @property
    def pings(self) -> bool:
        return False

    @property
    def extended(self) -> bool:
        return False

    def parse(self, text: str, limits: Limits = DEFAULT_LIMITS) -> Command:
        frame = decode_json(text, "frame", None)
        if not isinstance(frame, dict):
            raise ProtocolError("invalid_json", "frame must be a JSON object")
        command = frame.get("command")
        if command not in _COMMANDS:
            raise ProtocolError("unknown_command", f"unknown command {command!r}")
        identifier = _identifier(frame, limits)
        if command == "subscribe":
            channel, params = parse_identifier(identifier)
            return Subscribe(identifier, channel, params)
        if command == "unsubscribe":
            return Unsubscribe(identifier)
        action = frame.get("action", "receive")
        if not isinstance(action, str):
            raise ProtocolError("invalid_action", "action must be a string", identifier)
        data = frame.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ProtocolError(
                "invalid_request", "data must be a JSON object", identifier
            )
        check_depth(data, "data", limits, identifier)
        ref = parse_ref(frame.get("ref"), identifier)
        return Message(identifier, action, {**data, "action": action}, ref)

    def welcome(
        self, sid: str = "", restored_ids: list[str] | None = None
    ) -> str | None:
        return None

    def history_result(self, identifier: str, *, ok: bool) -> str:
        # Never asked: the guide's clients cannot request history.
        kind = "confirm_history" if ok else "reject_history"
        return f'{{"type":{json.dumps(kind)},{_address(identifier)}}}'

    def ping(self, timestamp: int) -> str:
        return encode_ping(timestamp)  # not sent: pings is False

    def confirm(self, identifier: str) -> str:
        return f'{{"type":"confirm_subscription",{_address(identifier)}}}'

    def reject(
        self, identifier: str, reason: str | None = None, message: str | None = None
    ) -> str:
        why = "" if reason is None else f',"reason":{encode_payload(reason)}'
        if message is not None:
            why += f',"message":{encode_payload(message)}'
        return f'{{"type":"reject_subscription",{_address(identifier)}{why}}}'

    def disconnect(self, reason: str, *, reconnect: bool) -> str:
        return encode_disconnect(reason, reconnect=reconnect)

    def error(self, reason: str, message: str, identifier: str | None = None) -> str:
        frame: dict[str, Any] = {"type": "error", "reason": reason, "message": message}
        if identifier is not None:
            # (a name that does not parse was the problem: left out)
            with contextlib.suppress(ProtocolError):
                frame["channel"], frame["params"] = parse_identifier(identifier)
        return encode_payload(frame)

    def message_prefix(self, identifier: str) -> str:
        return f'{{"type":"message",{_address(identifier)},"data":'

    def reply(self, identifier: str, ref: Ref, result: str) -> str:
        return (
            f'{{"type":"reply",{_address(identifier)},'
            f'"ref":{encode_payload(ref)},"result":{result}}}'
        )

    def reply_error(self, identifier: str, ref: Ref, reason: str, message: str) -> str:
        return (
            f'{{"type":"reply",{_address(identifier)},"ref":{encode_payload(ref)},'
            f'"error":{encode_error_object(reason, message)}}}'
        )


def _identifier(frame: dict[str, Any], limits: Limits) -> str:
    channel = frame.get("channel")
    if not isinstance(channel, str) or not channel:
        raise ProtocolError("invalid_request", "channel must be a non-empty string")
    params = frame.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError("invalid_request", "params must be a JSON object")
    if "channel" in params:
        raise ProtocolError("invalid_request", "params cannot have a 'channel' key")
    identifier = guide_identifier(channel, params)
    if len(identifier) > limits.max_identifier_bytes:
        raise ProtocolError(
            "identifier_too_large",
            f"channel and params are limited to {limits.max_identifier_bytes} bytes",
        )
    check_depth(params, "params", limits, identifier)
    return identifier
