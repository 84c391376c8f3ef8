"""The client's side of ``actioncable-v1-ext-json``, sans I/O.

What :class:`~trio_cable.protocol.client.ClientProtocol` adds when the
server selects AnyCable's extended protocol (the frames are the server's,
:mod:`.ext`): the session id of ``welcome``, the position of every
broadcast it receives (``stream_id``/``epoch``/``offset``, kept per
stream of each subscription, so a replayed or repeated one is dropped),
the ``history`` request a subscription sends after a reconnect (from its
positions, or since a time for streams it has none of), ``pong`` and
``whisper``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .codec import PROTOCOL, encode_payload
from .ext import EXT_PROTOCOL, StreamPosition

__all__ = [
    "EXT_OFFER",
    "PLAIN_OFFER",
    "PONG_COMMAND",
    "Positions",
    "encode_history_command",
    "encode_subscribe_with_history",
    "encode_whisper",
    "history_request",
]

#: Offered by a client that speaks the extended protocol: the best first,
#: so a server that does not speak it selects ``actioncable-v1-json``.
EXT_OFFER: Final = (EXT_PROTOCOL, PROTOCOL, "actioncable-unsupported")
#: Offered by a plain client, as the official client offers.
PLAIN_OFFER: Final = (PROTOCOL, "actioncable-unsupported")

PONG_COMMAND: Final = '{"command":"pong"}'


@dataclass(slots=True)
class Positions:
    """The last broadcast a subscription received of each stream."""

    streams: dict[str, StreamPosition] = field(default_factory=dict)

    def accept(self, frame: dict[str, Any]) -> bool:
        """Record the position of a data frame; False when the frame is one
        already received (same stream and epoch, offset not past the last).
        A frame without a position is always new."""
        stream = frame.get("stream_id")
        epoch = frame.get("epoch")
        offset = frame.get("offset")
        if (
            not isinstance(stream, str)
            or not isinstance(epoch, str)
            or isinstance(offset, bool)
            or not isinstance(offset, int)
        ):
            return True
        seen = self.streams.get(stream)
        if seen is not None and seen.epoch == epoch and offset <= seen.offset:
            return False
        self.streams[stream] = StreamPosition(epoch, offset)
        return True


def history_request(positions: Positions, since: int | None) -> str:
    """The ``history`` object: after each known position, and since
    ``since`` (UNIX seconds, the server's clock) for the other streams."""
    streams = {
        name: {"epoch": spot.epoch, "offset": spot.offset}
        for name, spot in positions.streams.items()
    }
    request: dict[str, Any] = {"streams": streams}
    if since is not None:
        request["since"] = since
    return encode_payload(request)


def encode_subscribe_with_history(identifier: str, history: str) -> str:
    return (
        f'{{"command":"subscribe","identifier":{encode_payload(identifier)},'
        f'"history":{history}}}'
    )


def encode_history_command(identifier: str, history: str) -> str:
    return (
        f'{{"command":"history","identifier":{encode_payload(identifier)},'
        f'"history":{history}}}'
    )


def encode_whisper(identifier: str, data: Any) -> str:
    """``data`` travels as JSON, not as a JSON string (as AnyCable's does)."""
    return (
        f'{{"command":"whisper","identifier":{encode_payload(identifier)},'
        f'"data":{encode_payload(data)}}}'
    )
