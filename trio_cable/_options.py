"""Every option of a cable, in one typed, frozen record."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final
from urllib.parse import urlsplit

from ._history import HistoryConfig, HistoryPolicy
from ._signing import Keys
from .protocol.codec import Limits
from .protocol.server import ProtocolSettings
from .transports.inbound import InputLimits

__all__ = ["DEFAULT_REDIS_PREFIX", "CableOptions"]

DEFAULT_REDIS_PREFIX: Final = "trio_cable:"


@dataclass(frozen=True)
class CableOptions:
    """The options of :class:`~trio_cable.Cable`, given as its keyword
    arguments (or as one ``options=CableOptions(...)``).

    Fields:
        ping_interval: seconds between ``ping`` frames (3, like Rails;
            the official client calls a connection stale after 6).
        max_outbox_frames: frames queued for one client before it counts
            as too slow: it is sent ``disconnect`` (reason ``too_slow``,
            reconnect true) and closed, and no broadcaster ever waits.
        max_pending_commands: commands queued for one subscription while
            an earlier action runs; more are refused (``too_many_commands``).
        max_subscriptions: subscriptions per connection.
        hook_timeout: how long ``unsubscribed()`` may run at disconnect.
        close_timeout: bound on the close handshake at disconnect/shutdown.
        redis_url, redis_prefix, redis_buffer: cross-process broadcasts
            through Redis (see docs/scaling.md).
        allowed_origins: browser origins allowed to connect: exact origins
            (``"https://example.com"``) or patterns
            (``"https://*.example.com"``), or ``"*"`` for any. By default
            only the same origin as the ``Host`` header. Handshakes without
            an ``Origin`` header (non-browser clients) are allowed. Refused
            handshakes get HTTP 403 before any WebSocket is accepted.
        max_connections: open connections per process, handshakes under
            way included; beyond it handshakes get HTTP 503.
        max_handshakes: sockets accepted but not yet through their
            handshake (the direct transport); beyond it new sockets are
            closed at once, so slow handshakes cannot take every file
            descriptor (``counters["handshakes_refused"]``).
        max_frame_bytes: largest client frame; larger ones are refused
            with ``frame_too_large``.
        max_identifier_bytes: longest identifier (``identifier_too_large``).
        max_json_depth: deepest nesting of params and data (``json_too_deep``).
        commands_per_second, command_burst: a token bucket per connection;
            commands beyond it are refused with ``rate_limited``.
        max_outbox_bytes: bytes queued for one client before the slow-client
            policy runs (besides ``max_outbox_frames``).
        input_frames_per_second, input_bytes_per_second: what one client
            may send the direct transport, counting every WebSocket frame
            (pings and fragments too) and byte; a client past them is read
            no faster (TCP pushes back on it), counted in
            ``counters["input_throttled"]`` (1,000 frames and 1 MiB per
            second, bursts of one second's worth).
        max_fragments, message_timeout: a message in more fragments (1,024)
            or unfinished for longer (10 s) closes its socket with code
            1008 on the direct transport (``counters["message_refused"]``).
        extended_protocol: speak AnyCable's ``actioncable-v1-ext-json``
            (session ids, history, recovery) to clients that offer it
            (default true); false refuses clients that offer only it.
        pong_timeout: seconds an extended-protocol client may stay silent
            (no pong, no frame at all) before it is sent ``disconnect``
            with reason ``no_pong`` (reconnect true) and closed; checked
            at each ping. None (the default): never.
        history: the streams that keep history, for recovery (see
            docs/reliability.md): names or ``fnmatch`` patterns, or a
            mapping of them to a :class:`HistoryPolicy` (None: the
            default one). Nothing keeps history by default.
        session_ttl: how long (seconds) the session of an extended-protocol
            client that dropped is kept for it to resume: its identity and
            subscriptions back, no connect hook, no ``subscribed()`` (300,
            as AnyCable; 0: never kept). See docs/reliability.md.
        max_sessions: sessions kept at most; the oldest gives way.
        history_limit, history_ttl: the default policy: the last
            ``history_limit`` broadcasts of a stream (100), none older than
            ``history_ttl`` seconds (300).
        streams_secret: the key (or keys: the first signs, any verifies)
            of signed ``$pubsub`` streams, AnyCable's ``streams_secret``:
            with it the cable has a ``$pubsub`` channel, and a client
            subscribes to any stream the server signed for it
            (:meth:`~trio_cable.Cable.signed_stream_name`; see
            docs/reliability.md). None (the default): no signed streams.
        public_streams: the ``$pubsub`` channel also opens unsigned
            ``stream_name`` streams (``cable.streamFrom(name)``): any client
            may listen to any stream it can name. Off by default.
        streams_whisper: clients may whisper on signed ``$pubsub`` streams
            (public ones always allow it, as in AnyCable).
        presence_grace: seconds a presence member stays after its last
            connection dropped without leaving (a page reload comes back
            meanwhile, so nobody sees it leave and join again); 15, as
            AnyCable's ``presence_ttl``; 0: leave at once. An explicit
            leave or unsubscribe always leaves at once.
        presence_info_bytes: largest ``info`` a client may join with
            (encoded JSON, 4 KiB); more is refused with
            ``presence_info_too_large``.
        presence_heartbeat, presence_expiry: with Redis, each process
            renews its claim on its members every ``presence_heartbeat``
            seconds (5); a process silent for ``presence_expiry`` seconds
            (20) is taken as dead and another process announces its
            members' leaves, so they leave at most expiry + heartbeat
            (25 s) after it died. See docs/presence.md.
    """

    ping_interval: float = 3.0
    max_outbox_frames: int = 1024
    max_outbox_bytes: int = 4 * 1024 * 1024
    max_pending_commands: int = 64
    max_subscriptions: int = 256
    hook_timeout: float = 1.0
    close_timeout: float = 1.0
    # Out of the repr (options get logged): a URL may carry a password.
    redis_url: str | None = field(default=None, repr=False)
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
    extended_protocol: bool = True
    pong_timeout: float | None = None
    history: Sequence[str] | Mapping[str, HistoryPolicy | None] = ()
    history_limit: int = 100
    history_ttl: float = 300.0
    session_ttl: float = 300.0
    max_sessions: int = 10_000
    # Kept out of repr(): options get logged, secrets must not be.
    streams_secret: Keys | None = field(default=None, repr=False)
    public_streams: bool = False
    streams_whisper: bool = False
    input_frames_per_second: float = 1000.0
    input_bytes_per_second: float = 1024.0 * 1024.0
    max_fragments: int = 1024
    message_timeout: float = 10.0
    presence_grace: float = 15.0
    presence_info_bytes: int = 4096
    presence_heartbeat: float = 5.0
    presence_expiry: float = 20.0

    @cached_property
    def input(self) -> InputLimits:
        """What the direct and trio-websocket transports let one client send."""
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
