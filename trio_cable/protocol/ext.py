"""AnyCable's extended protocol, ``actioncable-v1-ext-json``, sans-I/O.

What the extended dialect adds to ``actioncable-v1-json`` (the frames as
``@anycable/core``'s ``action_cable_ext`` protocol and anycable-go put
them on the wire):

* ``welcome`` carries the session id ``sid`` (and, for a restored
  session, ``restored`` and ``restored_ids``);
* broadcasts to a stream with history carry ``stream_id``, ``epoch`` and
  ``offset`` (:class:`Position`);
* ``subscribe`` may carry ``history`` and the ``history`` command asks
  for it later (:class:`HistoryRequest`): since a UNIX time in seconds,
  or per stream after an epoch and offset; the answer is the missed
  messages, then ``confirm_history`` (or only ``reject_history``);
* presence: ``join``, ``leave`` and ``presence`` (see :mod:`.presence`);
* the client answers pings with ``pong`` (and may ping, answered with
  ``{"type":"pong"}``); a client silent for ``pong_timeout`` is
  disconnected with ``no_pong``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import ProtocolError
from .codec import (
    DEFAULT_LIMITS,
    Command,
    Limits,
    Subscribe,
    decode_frame,
    dumps,
    parse_command,
)
from .presence import PRESENCE_COMMANDS, PresenceCommand, parse_presence

__all__ = [
    "EXT_PROTOCOL",
    "PONG",
    "History",
    "HistoryRequest",
    "Ping",
    "Pong",
    "Position",
    "StreamPosition",
    "Whisper",
    "encode_history_result",
    "encode_welcome_ext",
    "parse_ext_frame",
]

#: AnyCable's extended Action Cable protocol.
EXT_PROTOCOL: Final = "actioncable-v1-ext-json"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a broadcast sits in its stream's history.

    ``tail`` ends every frame of that broadcast: the three position
    fields and the closing brace, encoded once per broadcast.
    """

    stream: str
    epoch: str
    offset: int
    tail: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tail = (
            f',"stream_id":{dumps(self.stream)},"epoch":{dumps(self.epoch)},'
            f'"offset":{self.offset}}}'
        )
        object.__setattr__(self, "tail", tail)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """The last message a client saw of one stream."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """What a client missed: per stream after a position (``streams``), or
    else everything since ``since`` (UNIX seconds; None: nothing)."""

    since: int | None = None
    streams: dict[str, StreamPosition] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class History:
    """``{"command":"history"}``: replay what ``request`` names."""

    identifier: str
    request: HistoryRequest = field(hash=False)


@dataclass(frozen=True, slots=True)
class Pong:
    """``{"command":"pong"}``: the client is alive."""


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"command":"ping"}``: the client asks whether we are alive."""


@dataclass(frozen=True, slots=True)
class Whisper:
    """``{"command":"whisper"}``: ``payload`` (encoded ``data``) for the
    other subscribers of the subscription's whisper stream."""

    identifier: str
    payload: str


ExtCommand = Command | History | Pong | Ping | Whisper | PresenceCommand

#: The answer to a client's ping (as anycable/anycable's server sends it).
PONG: Final = '{"type":"pong"}'


def parse_history(raw: Any, identifier: str) -> HistoryRequest:
    """A ``history`` field as a :class:`HistoryRequest`."""
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_request", "history must be an object", identifier)
    since = raw.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int | float)
    ):
        raise ProtocolError(
            "invalid_request", "history.since must be UNIX seconds", identifier
        )
    streams: dict[str, StreamPosition] = {}
    raw_streams = raw.get("streams")
    if raw_streams is None:
        raw_streams = {}
    if not isinstance(raw_streams, dict):
        raise ProtocolError(
            "invalid_request", "history.streams must be an object", identifier
        )
    for stream, spot in raw_streams.items():
        epoch = spot.get("epoch") if isinstance(spot, dict) else None
        offset = spot.get("offset") if isinstance(spot, dict) else None
        if (
            not isinstance(epoch, str)
            or isinstance(offset, bool)
            or not isinstance(offset, int)
        ):
            raise ProtocolError(
                "invalid_request",
                f"history of {stream!r} needs a string epoch and an integer offset",
                identifier,
            )
        streams[stream] = StreamPosition(epoch, offset)
    return HistoryRequest(int(since) if since else None, streams)


def parse_ext_frame(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ExtCommand:
    """Parse one client frame of the extended dialect.

    Raises:
        ProtocolError: as :func:`~trio_cable.protocol.codec.parse_frame`;
            also ``invalid_request`` for a malformed ``history`` or
            presence command (see :mod:`.presence`).
    """
    frame = decode_frame(text)
    command = frame.get("command")
    if command == "pong":
        return Pong()
    if command == "ping":
        return Ping()
    identifier = frame.get("identifier")
    ident = identifier if isinstance(identifier, str) else None
    if isinstance(command, str) and command in PRESENCE_COMMANDS:
        return parse_presence(frame, limits)
    if command == "whisper":
        if ident is None:
            raise ProtocolError(
                "invalid_request", "identifier must be a JSON-encoded string"
            )
        if "data" not in frame:
            raise ProtocolError("invalid_request", "a whisper needs data", ident)
        # AnyCable's client sends data as JSON, not as a JSON string.
        return Whisper(ident, dumps(frame["data"]))
    if command == "history":
        if ident is None:
            raise ProtocolError(
                "invalid_request", "identifier must be a JSON-encoded string"
            )
        return History(ident, parse_history(frame.get("history"), ident))
    parsed = parse_command(frame, limits)
    raw = frame.get("history")
    if isinstance(parsed, Subscribe) and raw is not None:
        return Subscribe(
            parsed.identifier,
            parsed.channel,
            parsed.params,
            parse_history(raw, parsed.identifier),
        )
    return parsed


def encode_welcome_ext(sid: str, restored_ids: list[str] | None = None) -> str:
    """``welcome`` with the session id; ``restored_ids`` for a resumed one."""
    if restored_ids is None:
        return f'{{"type":"welcome","sid":{dumps(sid)}}}'
    return (
        f'{{"type":"welcome","sid":{dumps(sid)},"restored":true,'
        f'"restored_ids":{dumps(restored_ids)}}}'
    )


def encode_history_result(identifier: str, *, ok: bool) -> str:
    """``confirm_history`` (everything missed was sent) or ``reject_history``."""
    kind = "confirm_history" if ok else "reject_history"
    return f'{{"type":{dumps(kind)},"identifier":{dumps(identifier)}}}'
