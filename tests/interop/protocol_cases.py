"""Bad client frames, shared by the official-client and in-memory tests.

Each case is a raw text frame (built around the identifier of a live
``ChatChannel`` subscription where it needs one) and the ``reason`` of the
error frame the server must answer with. None of them may end the
connection or the subscriptions on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trio_cable.testing import identifier_for


@dataclass(frozen=True)
class BadFrame:
    name: str
    text: str
    reason: str


def _frame(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


def _message(identifier: str, data: Any) -> str:
    return _frame(command="message", identifier=identifier, data=json.dumps(data))


def bad_frames(live: str) -> list[BadFrame]:
    """The cases, for a connection subscribed with identifier ``live``."""
    elsewhere = identifier_for("ChatChannel", room="never-subscribed")
    return [
        BadFrame("invalid JSON", "{not json", "invalid_json"),
        BadFrame("frame is not an object", "[1,2,3]", "invalid_json"),
        BadFrame(
            "unknown command",
            _frame(command="dance", identifier=live),
            "unknown_command",
        ),
        BadFrame("missing command", _frame(identifier=live), "unknown_command"),
        BadFrame("missing identifier", _frame(command="subscribe"), "invalid_request"),
        BadFrame(
            "identifier is not a string",
            _frame(command="subscribe", identifier={"channel": "ChatChannel"}),
            "invalid_request",
        ),
        BadFrame(
            "identifier is not JSON",
            _frame(command="subscribe", identifier="ChatChannel"),
            "invalid_json",
        ),
        BadFrame(
            "identifier without a channel",
            _frame(command="subscribe", identifier='{"room":"x"}'),
            "invalid_request",
        ),
        BadFrame(
            "message to an unsubscribed identifier",
            _message(elsewhere, {"action": "speak", "message": "lost"}),
            "not_subscribed",
        ),
        BadFrame(
            "unsubscribe an unsubscribed identifier",
            _frame(command="unsubscribe", identifier=elsewhere),
            "not_subscribed",
        ),
        BadFrame(
            "message without data",
            _frame(command="message", identifier=live),
            "invalid_request",
        ),
        BadFrame(
            "data is not JSON",
            _frame(command="message", identifier=live, data="{nope"),
            "invalid_json",
        ),
        BadFrame(
            "data is not a string",
            _frame(command="message", identifier=live, data={"action": "speak"}),
            "invalid_request",
        ),
        BadFrame("data is not an object", _message(live, [1, 2]), "invalid_json"),
        BadFrame(
            "action is not a string", _message(live, {"action": 5}), "invalid_action"
        ),
        BadFrame("unknown action", _message(live, {"action": "fly"}), "unknown_action"),
        BadFrame(
            "no action, no receive()",
            _message(live, {"message": "x"}),
            "unknown_action",
        ),
        BadFrame("private action", _message(live, {"action": "_x"}), "invalid_action"),
        BadFrame(
            "dunder action", _message(live, {"action": "__init__"}), "invalid_action"
        ),
        BadFrame(
            "lifecycle hook as action",
            _message(live, {"action": "subscribed"}),
            "invalid_action",
        ),
        BadFrame(
            "unsubscribed hook as action",
            _message(live, {"action": "unsubscribed"}),
            "invalid_action",
        ),
        BadFrame(
            "internal method as action",
            _message(live, {"action": "reject"}),
            "invalid_action",
        ),
        BadFrame(
            "property as action",
            _message(live, {"action": "room"}),
            "unknown_action",
        ),
    ]
