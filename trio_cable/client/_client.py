"""The public doors: :class:`CableClient` and :func:`open_cable_client`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Unpack

import trio

from .._util import single_error
from ._connection import ClientConnection
from ._options import ClientOptionArgs, ClientOptions
from ._reconnect import run_client
from ._subscription import Subscription

__all__ = ["CableClient", "open_cable_client"]


class CableClient:
    """A connection to an Action Cable server; made by :func:`open_cable_client`.

    Takes the same keyword arguments; raises :class:`ValueError` for a URL
    that is not ``ws://`` or ``wss://`` and for a ``buffer_size`` below 1.

    Attributes:
        url: the cable's URL.
        options: the options it was opened with (a :class:`ClientOptions`).
        reconnects: how many times the client connected again after a loss.
        disconnect_reason: why the last connection ended (``None`` so far).
    """

    def __init__(self, url: str, **options: Unpack[ClientOptionArgs]) -> None:
        self.url = url
        self.options = ClientOptions(**options)
        self._conn = ClientConnection(url, self.options)

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<CableClient {self.url} {state}>"

    @property
    def connected(self) -> bool:
        """Whether the socket is open and the server said ``welcome``."""
        return self._conn.ws is not None

    @property
    def reconnects(self) -> int:
        return self._conn.reconnects

    @property
    def extended(self) -> bool:
        """Whether the current (or last) connection speaks AnyCable's
        ``actioncable-v1-ext-json`` (else ``actioncable-v1-json``)."""
        return self._conn.protocol.ext

    @property
    def session_id(self) -> str | None:
        """The server's session id for this client (extended protocol),
        presented on reconnect to resume the session."""
        return self._conn.protocol.sid

    @property
    def disconnect_reason(self) -> str | None:
        return self._conn.disconnect_reason

    @property
    def stopping(self) -> bool:
        """Whether the client is shutting down (its block is being left)."""
        return self._conn.stopping

    async def wait_connected(self) -> None:
        """Wait until the client is connected (returns at once if it is)."""
        await self._conn.wait_for(lambda: self.connected)

    def subscribe(
        self, channel: str, /, **params: Any
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe to ``channel`` with ``params``; leave the block to
        unsubscribe.

        Returns once the server confirmed, waiting through reconnects; the
        subscription is re-sent every ``subscribe_retry`` seconds until
        answered (a Rails server may miss one), and subscribed again after
        every reconnect. Two subscriptions with the same channel and params
        share one server subscription; each gets every message.

        Raises:
            SubscriptionRejected: the server rejected it.
            SubscriptionTimeout: no answer within ``subscribe_timeout``.

        Cancellation: leaving the block, even cancelled, sends
        ``unsubscribe`` (bounded by ``close_timeout``) when this was the
        last subscription with that identifier.
        """
        return self._conn.subscribe(channel, params)


@contextlib.asynccontextmanager
async def open_cable_client(
    url: str, **options: Unpack[ClientOptionArgs]
) -> AsyncIterator[CableClient]:
    """Connect to the Action Cable server at ``url`` (``ws://`` or ``wss://``).

    Returns once the server said ``welcome``. Then the client keeps the
    connection: when it is lost (closed, reset, ``disconnect`` with
    ``reconnect: true``, or stale: no frame for ``stale_timeout`` seconds,
    two missed pings) it reconnects after ``backoff_delay(attempt,
    reconnect_delay, max_reconnect_delay)`` seconds and subscribes again
    (with the extended protocol: resumes its session, or subscribes asking
    for what each subscription missed).

    Arguments (keyword only; defaults in :class:`ClientOptions`):
        headers, cookies: sent with the handshake. An ``Origin`` matching
            the URL's host is sent unless ``headers`` has one (Rails checks).
        ssl_context: for ``wss://`` (default: the system's).
        reconnect: reconnect after a lost connection (``True``); if false,
            a loss raises :class:`ConnectionLost`.
        wait_for_server: keep trying the first connection too, instead of
            raising :class:`ServerUnreachable` at once (``False``).
        give_up_after: raise :class:`ServerUnreachable` after being
            disconnected this long (``None``: never give up).
        reconnect_delay, max_reconnect_delay: the backoff (0.5 s, 10 s).
        stale_timeout: seconds without any frame before the connection
            counts as dead (6 s).
        connect_timeout: TCP connect, handshake and ``welcome``, each (5 s).
        close_timeout: bound on the close handshake and on ``unsubscribe``
            when leaving (1 s).
        subscribe_timeout, subscribe_retry: see :meth:`CableClient.subscribe`
            (10 s, 0.5 s).
        buffer_size, overflow: per-subscription buffer (see
            :class:`Subscription`; 1024, ``"drop_oldest"``).
        max_message_size: larger frames close the connection (1 MiB).
        extended: offer AnyCable's ``actioncable-v1-ext-json`` first
            (``True``; a server that does not speak it selects
            ``actioncable-v1-json``). With it the client resumes its
            session after a drop, receives what it missed on streams with
            history (once, in order: :class:`Recovered`, or
            :class:`HistoryLost` when that is gone), answers pings with
            ``pong``, and may :meth:`~Subscription.whisper`.

    Raises:
        ServerUnreachable: no connection could be made.
        ConnectionUnauthorized, ConnectionDenied: the server refused the
            client (also later: the block is cancelled and this is raised).
        ConnectionLost: the connection was lost with ``reconnect=False``.

    Cancellation: leaving the block (or cancelling it) closes the socket
    with a close handshake bounded by ``close_timeout``; every task the
    client started has ended when it returns.
    """
    client = CableClient(url, **options)
    with single_error():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_client, client._conn)
            try:
                await client.wait_connected()
                yield client
            finally:
                client._conn.stop()
