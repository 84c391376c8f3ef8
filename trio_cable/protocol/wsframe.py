"""Server-to-client WebSocket text frames, encoded by hand (sans-I/O).

Server frames are unmasked (RFC 6455, 5.1), so a frame's bytes depend on
its text alone: every subscriber that gets the same frame string (the hub
shares one per broadcast and identifier) can be sent the same bytes.
:class:`FrameCache` keeps the bytes of recently encoded strings, keyed by
the string object itself, so a broadcast to a thousand sockets encodes
once.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FrameCache", "encode_text_frame"]

_FIN_TEXT: Final = 0x81


def encode_text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame carrying ``text``."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return bytes((_FIN_TEXT, 126)) + n.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + n.to_bytes(8, "big") + payload


class FrameCache:
    """Encoded frames of the strings seen lately, by identity.

    Keyed by ``id(text)``; each entry keeps its string alive, so an id
    cannot be reused while its entry exists, and a lookup checks identity
    besides. Emptied whenever it holds ``size`` entries or ``max_bytes``
    bytes: the strings worth caching are the ones a fan-out is handing
    out right now.
    """

    __slots__ = ("_bytes", "_entries", "hits", "max_bytes", "misses", "size")

    def __init__(self, size: int = 64, max_bytes: int = 1 << 20) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._entries: dict[int, tuple[str, bytes]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def encode(self, text: str) -> bytes:
        entry = self._entries.get(id(text))
        if entry is not None and entry[0] is text:
            self.hits += 1
            return entry[1]
        self.misses += 1
        data = encode_text_frame(text)
        if len(self._entries) >= self.size or self._bytes >= self.max_bytes:
            self.clear()
        self._entries[id(text)] = (text, data)
        self._bytes += len(data)
        return data

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
