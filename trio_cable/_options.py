"""Every option of a cable, in one typed, frozen record."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final
from urllib.parse import urlsplit

from .protocol.codec import Limits
from .protocol.server import ProtocolSettings
from .transports.inbound import InputLimits

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
    max_handshakes: int = 1_000
    max_frame_bytes: int = 64 * 1024
    max_identifier_bytes: int = 1024
    max_json_depth: int = 16
    commands_per_second: float = 50.0
    command_burst: int = 100
    input_frames_per_second: float = 1000.0
    input_bytes_per_second: float = 1024.0 * 1024.0
    max_fragments: int = 1024
    message_timeout: float = 10.0

    @cached_property
    def input(self) -> InputLimits:
        """What the direct transport lets one client send."""
        return InputLimits(
            frames_per_second=self.input_frames_per_second,
            bytes_per_second=self.input_bytes_per_second,
            max_fragments=self.max_fragments,
            message_timeout=self.message_timeout,
        )

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

    @property
    def drain_timeout(self) -> float:
        """How long a shutdown waits for connections to end."""
        return self.close_timeout + self.hook_timeout


def origin_allowed(
    origin: str, host: str | None, allowed: Collection[str] | None
) -> bool:
    """Whether a browser ``origin`` may open a WebSocket: with ``allowed``
    None, only the page's own host (``host``); else any of the ``allowed``
    patterns (``fnmatch``-style, ``"*"`` for all), case-insensitively."""
    if allowed is None:
        netloc = urlsplit(origin).netloc
        return host is not None and netloc.lower() == host.lower()
    return any(
        pattern == "*" or fnmatch.fnmatchcase(origin.lower(), pattern.lower())
        for pattern in allowed
    )
