"""Every option of a cable, in one typed, frozen record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from ._history import HistoryConfig, HistoryPolicy
from .protocol.codec import Limits
from .protocol.server import ProtocolSettings

__all__ = ["DEFAULT_REDIS_PREFIX", "CableOptions"]

DEFAULT_REDIS_PREFIX: Final = "trio_cable:"


@dataclass(frozen=True)
class CableOptions:
    """The options of :class:`~trio_cable.Cable` (its keyword arguments;
    see its docstring for what each one means)."""

    ping_interval: float = 3.0
    max_outbox_frames: int = 1024
    max_outbox_bytes: int = 4 * 1024 * 1024
    max_pending_commands: int = 64
    max_subscriptions: int = 256
    hook_timeout: float = 1.0
    close_timeout: float = 1.0
    redis_url: str | None = None
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    redis_buffer: int = 10_000
    allowed_origins: Sequence[str] | None = None
    max_connections: int = 10_000
    max_frame_bytes: int = 64 * 1024
    max_identifier_bytes: int = 1024
    max_json_depth: int = 16
    commands_per_second: float = 50.0
    command_burst: int = 100
    extended_protocol: bool = True
    pong_timeout: float | None = None
    history: Sequence[str] | Mapping[str, HistoryPolicy | None] = ()
    history_limit: int = 100
    history_ttl: float = 300.0

    @cached_property
    def protocol(self) -> ProtocolSettings:
        """The part every connection's protocol enforces."""
        return ProtocolSettings(
            max_frame_bytes=self.max_frame_bytes,
            limits=Limits(self.max_identifier_bytes, self.max_json_depth),
            max_subscriptions=self.max_subscriptions,
            max_pending_commands=self.max_pending_commands,
            commands_per_second=self.commands_per_second,
            command_burst=self.command_burst,
        )

    @cached_property
    def history_config(self) -> HistoryConfig | None:
        """Which streams keep history (None: none does)."""
        if not self.history:
            return None
        streams = (
            dict(self.history)
            if isinstance(self.history, Mapping)
            else dict.fromkeys(self.history)
        )
        return HistoryConfig(
            streams, HistoryPolicy(self.history_limit, self.history_ttl)
        )

    @property
    def drain_timeout(self) -> float:
        """How long a shutdown waits for connections to end."""
        return self.close_timeout + self.hook_timeout
