"""The client's options: one frozen record, built from the keyword
arguments of :func:`~trio_cable.client.open_cable_client`."""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

__all__ = ["ClientOptionArgs", "ClientOptions", "HeaderArg", "OverflowPolicy"]

OverflowPolicy = Literal["drop_oldest", "error"]
HeaderArg = Mapping[str, str] | Iterable[tuple[str, str]] | None


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """How a :class:`~trio_cable.client.CableClient` connects, reconnects
    and buffers; see :func:`~trio_cable.client.open_cable_client` for what
    each one means.

    Raises:
        ValueError: ``buffer_size`` below 1.
    """

    headers: HeaderArg = None
    cookies: Mapping[str, str] | None = None
    ssl_context: ssl.SSLContext | None = None
    reconnect: bool = True
    wait_for_server: bool = False
    give_up_after: float | None = None
    reconnect_delay: float = 0.5
    max_reconnect_delay: float = 10.0
    stale_timeout: float = 6.0
    connect_timeout: float = 5.0
    close_timeout: float = 1.0
    subscribe_timeout: float = 10.0
    subscribe_retry: float = 0.5
    buffer_size: int = 1024
    overflow: OverflowPolicy = "drop_oldest"
    max_message_size: int = 1 << 20
    extended: bool = True

    def __post_init__(self) -> None:
        if self.buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")


class ClientOptionArgs(TypedDict, total=False):
    """The keyword arguments that make a :class:`ClientOptions` (for
    ``**options: Unpack[ClientOptionArgs]``: mypy checks every call, and
    checks ``ClientOptions(**options)`` against the fields)."""

    headers: HeaderArg
    cookies: Mapping[str, str] | None
    ssl_context: ssl.SSLContext | None
    reconnect: bool
    wait_for_server: bool
    give_up_after: float | None
    reconnect_delay: float
    max_reconnect_delay: float
    stale_timeout: float
    connect_timeout: float
    close_timeout: float
    subscribe_timeout: float
    subscribe_retry: float
    buffer_size: int
    overflow: OverflowPolicy
    max_message_size: int
    extended: bool
