"""A server protocol machine on no socket: the host its channels come
from, and every frame it sent, decoded (the protocol tests' one fixture
object)."""

from __future__ import annotations

import json
from typing import Any

from trio_cable.protocol import ChannelRules, ProtocolSettings, ServerProtocol
from trio_cable.protocol.dialects import ACTIONCABLE_V1_JSON, Dialect


class ProtocolWire:
    """A :class:`ServerProtocol` speaking ``dialect`` whose host knows the
    channels ``rules``; ``settings`` are :class:`ProtocolSettings` fields.
    ``sent`` holds the frames as sent, ``counts`` the host's counters."""

    def __init__(
        self,
        *rules: ChannelRules,
        dialect: Dialect = ACTIONCABLE_V1_JSON,
        **settings: Any,
    ) -> None:
        self.rules = {r.name: r for r in rules}
        self.sent: list[str] = []
        self.counts: list[str] = []
        self.proto = ServerProtocol(
            dialect, ProtocolSettings(**settings), send=self.sent.append, host=self
        )

    def channel_rules(self, name: str) -> ChannelRules | None:
        return self.rules.get(name)

    def channel_names(self) -> list[str]:
        return list(self.rules)

    def count(self, name: str) -> None:
        self.counts.append(name)

    def frames(self) -> list[dict[str, Any]]:
        """The frames sent since the last call, decoded."""
        out = [json.loads(frame) for frame in self.sent]
        self.sent.clear()
        return out
