"""The handshake request as channels and connect hooks see it.

Every transport describes its handshake as an ASGI-style WebSocket scope
(Hypercorn hands us one; the others build one), so this one class serves
them all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from http.cookies import CookieError, SimpleCookie
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl

__all__ = ["Headers", "Request"]

T = TypeVar("T")


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only view of request headers.

    ``headers["cookie"]`` gives the first value of a repeated header;
    :meth:`getlist` gives them all. It decodes on lookup and keeps no copy:
    a server holds one per open connection.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Sequence[tuple[bytes, bytes]] | Sequence[tuple[str, str]]):
        self._raw = raw

    def _items(self) -> Iterator[tuple[str, str]]:
        for name, value in self._raw:
            if isinstance(name, bytes):
                name = name.decode("latin-1")
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            yield name.lower(), value

    def __getitem__(self, name: str) -> str:
        value = self._first(name)
        if value is None:
            raise KeyError(name)
        return value

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | T) -> str | T: ...

    def get(self, name: str, /, default: object = None) -> object:
        value = self._first(name)
        return default if value is None else value

    def _first(self, name: str) -> str | None:
        """The first value of header ``name``: only the name compared
        (every handshake is asked its origin and host), one value decoded."""
        key = name.lower()
        raw_key = key.encode("latin-1", "replace")
        for item, value in self._raw:
            if isinstance(item, bytes):
                if item.lower() != raw_key:
                    continue
            elif item.lower() != key:
                continue
            return value.decode("latin-1") if isinstance(value, bytes) else value
        return None

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._items()))

    def __len__(self) -> int:
        return len({name for name, _ in self._items()})

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [value for item, value in self._items() if item == key]

    def raw(self) -> list[tuple[str, str]]:
        return list(self._items())

    def __repr__(self) -> str:
        # Header values can hold secrets (cookies, tokens): names only.
        return f"Headers({sorted(self)!r})"


class Request:
    """The WebSocket handshake: path, query string, headers and cookies.

    ``scope`` is the ASGI scope (for the trio-websocket and in-memory
    transports, an equivalent dict they build).
    """

    __slots__ = ("__dict__", "scope")

    def __init__(self, scope: Mapping[str, Any]):
        self.scope = scope

    @property
    def path(self) -> str:
        return str(self.scope.get("path", "/"))

    @property
    def query_string(self) -> str:
        raw = self.scope.get("query_string", b"")
        return raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)

    @property
    def headers(self) -> Headers:
        # Not cached: a Headers is a view (no copy), made in no time, and a
        # cache would give every Request a __dict__ for the connection's
        # lifetime (about 300 bytes; the cable reads the headers of every
        # handshake).
        return Headers(self.scope.get("headers", ()))

    @cached_property
    def query(self) -> Mapping[str, str]:
        """Query parameters; the last value wins when a name repeats."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @cached_property
    def query_items(self) -> list[tuple[str, str]]:
        """Every query parameter in order, repeats included."""
        return parse_qsl(self.query_string, keep_blank_values=True)

    @cached_property
    def cookies(self) -> Mapping[str, str]:
        """Cookies of the handshake; a malformed Cookie header gives none."""
        jar: SimpleCookie = SimpleCookie()
        for header in self.headers.getlist("cookie"):
            try:
                jar.load(header)
            except CookieError:
                continue
        return {name: morsel.value for name, morsel in jar.items()}

    @property
    def client(self) -> tuple[str, int] | None:
        client = self.scope.get("client")
        return (str(client[0]), int(client[1])) if client else None

    @property
    def subprotocols(self) -> list[str]:
        return list(self.scope.get("subprotocols", []))

    def __repr__(self) -> str:
        return f"<Request {self.path}>"
