"""The ASGI application: mount a cable in Hypercorn (trio worker).

``hypercorn --worker-class trio myapp:app`` with ``app = CableApp(cable)``
serves the cable at ``/cable``; pass ``app=`` another ASGI application to
send every other request (HTTP and WebSocket) to it. The cable runs for
the duration of the ASGI lifespan.

Hypercorn puts WebSocket messages together itself, within limits of its
own (characters, no fragment count, no deadline); while the lifespan
runs, CableApp holds them to the cable's instead
(:func:`bounded_hypercorn_messages`, which apps that run the cable
without CableApp's lifespan call themselves).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.resources
import logging
from collections.abc import Awaitable, Callable, Iterator

import trio

from ._cable import Cable
from ._gc import serving_gc
from ._metrics import METRICS_CONTENT_TYPE, metrics_text, stats_json
from ._serving import serve_connection
from .transports.asgi import (
    ASGIHandshake,
    ASGITransport,
    Message,
    Receive,
    Scope,
    Send,
)
from .transports.hypercorn_ws import MessageLimits, bounded_messages
from .transports.send_pool import SendPool

__all__ = [
    "ASGIApp",
    "ASGITransport",
    "CableApp",
    "Receive",
    "Scope",
    "Send",
    "bounded_hypercorn_messages",
]

log = logging.getLogger("trio_cable.asgi")

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class CableApp:
    """ASGI app serving ``cable`` at ``path``, and ``app`` for the rest.

    Lifespan: on startup the cable starts (and ``app``'s own lifespan, if
    it has one); on shutdown every client is sent ``disconnect`` with
    reason ``server_restart`` and the cable stops. While it runs,
    Hypercorn's WebSocket messages are held to ``max_message_size``
    bytes and the cable's ``max_fragments`` and ``message_timeout``
    (:func:`bounded_hypercorn_messages`).
    """

    def __init__(
        self,
        cable: Cable,
        app: ASGIApp | None = None,
        *,
        path: str = "/cable",
        stats_path: str | None = None,
        metrics_path: str | None = None,
        client_path: str | None = "/cable.js",
        tune_gc: bool | None = None,
        send_pool: bool = True,
        max_message_size: int = 1 << 20,
    ) -> None:
        self.cable = cable
        self.app = app
        self.path = path
        #: Opt-in: ``GET stats_path`` answers ``cable.stats()`` as JSON
        #: (counts only, no identities; ``trio-cable stats`` reads it).
        self.stats_path = stats_path
        #: Opt-in: ``GET metrics_path`` answers the cable's metrics in the
        #: Prometheus text format (docs/guide.md, "Metrics"); with several
        #: workers, each answers for itself.
        self.metrics_path = metrics_path
        #: ``GET client_path`` serves the packaged browser client,
        #: ``cable.js`` (``None``: not served).
        self.client_path = client_path
        #: True: apply :func:`trio_cable.tune_gc` at lifespan startup;
        #: False: leave the collector alone; None (the default): if the
        #: process still has Python's own collector settings (nobody chose
        #: any), raise its first threshold while the app serves, put back
        #: at shutdown (thousands of connections' objects made the default
        #: collector take over half the CPU: docs/benchmarks.md).
        self.tune_gc = tune_gc
        #: Writes connections' frames while their sockets take them, from
        #: a few tasks (run in the lifespan) instead of a writer task per
        #: socket woken for each broadcast (``send_pool=False``: the latter).
        self.send_pool = SendPool() if send_pool else None
        #: The largest message a client may send, in bytes across its
        #: fragments, as ``serve_cable``'s (Hypercorn's own
        #: ``websocket_max_message_size`` applies too: the smaller wins).
        self.max_message_size = max_message_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" and scope["path"] == self.path:
            # Straight into the serving path: every coroutine between
            # Hypercorn and the connection is a frame each idle socket
            # holds, and every local of this one a word in it.
            if self.cable.is_running:
                await serve_connection(
                    self.cable, ASGIHandshake(scope, receive, send, self.send_pool)
                )
            else:
                await _not_running(receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif kind == "http" and scope["path"] == self.client_path:
            await _serve_client(scope, send)
        elif kind == "http" and scope["path"] == self.stats_path:
            await _serve_bytes(send, "application/json", stats_json(self.cable))
        elif kind == "http" and scope["path"] == self.metrics_path:
            await _serve_metrics(self.cable, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif kind == "http":
            await _not_found(send)
        elif kind == "websocket":
            self.cable.count("path_refused")
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with trio.open_nursery() as nursery:
            inner = _InnerLifespan(self.app, scope) if self.app is not None else None
            try:
                if self.send_pool is not None:
                    await nursery.start(self.send_pool.run)
                await nursery.start(self.cable.serve)
                if inner is not None:
                    await inner.startup(nursery)
            except Exception as exc:
                log.exception("startup failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                nursery.cancel_scope.cancel()
                return
            with (
                serving_gc(self.tune_gc),
                bounded_hypercorn_messages(
                    self.cable, max_message_size=self.max_message_size
                ),
            ):
                await send({"type": "lifespan.startup.complete"})
                message = await receive()  # lifespan.shutdown
                await self.cable.shutdown()
                if inner is not None:
                    await inner.shutdown()
            nursery.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})


@contextlib.contextmanager
def bounded_hypercorn_messages(
    cable: Cable, *, max_message_size: int = 1 << 20
) -> Iterator[bool]:
    """Hold every WebSocket message Hypercorn receives in this process,
    while the block runs, to the limits the other transports keep:
    ``max_message_size`` bytes (UTF-8, across fragments; Hypercorn's own
    ``websocket_max_message_size`` too, the smaller wins), the cable's
    ``max_fragments`` fragments (empty ones count) and ``message_timeout``
    seconds from the first fragment, even if the client sends nothing
    more. Past a limit the socket is closed with 1009 (size) or 1008
    (fragments, time), counted in ``cable.counters["message_refused"]``.

    :class:`CableApp` does this for the duration of its lifespan; call it
    yourself only if you run the cable without that lifespan (your own
    ASGI app running ``cable.serve``), around the time you serve.

    Yields whether the limits are in force: False if the installed
    Hypercorn is not a release this was checked against (a warning says
    so, and Hypercorn's own limits apply). Hypercorn has no setting for
    this: the limits come from a subclass of its ``WSStream`` put where
    Hypercorn looks the class up, for the block's duration (see
    ``docs/security.md``).
    """
    limits = MessageLimits(
        max_message_size=max_message_size,
        input=cable.options.input,
        count=cable.count,
    )
    with bounded_messages(limits) as bounded:
        yield bounded


class _InnerLifespan:
    """Drives the wrapped app's lifespan, if it supports one."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self.to_app: trio.MemorySendChannel[Message]
        self.to_app, self._app_receive = trio.open_memory_channel[Message](1)
        self._from_app, self.from_app = trio.open_memory_channel[Message](1)
        self.supported = True

    async def startup(self, nursery: trio.Nursery) -> None:
        nursery.start_soon(self._run)
        await self.to_app.send({"type": "lifespan.startup"})
        reply = await self.from_app.receive()
        if reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(reply.get("message", "app startup failed"))

    async def shutdown(self) -> None:
        if not self.supported:
            return
        with trio.move_on_after(5):
            await self.to_app.send({"type": "lifespan.shutdown"})
            await self.from_app.receive()

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self._app_receive.receive, self._from_app.send)
        except Exception:
            # Apps without lifespan support raise on the unknown scope type.
            log.debug("the wrapped app has no lifespan", exc_info=True)
        finally:
            # ...or return at once: either way, whoever waits for a reply
            # must not wait forever.
            self.supported = False
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                self._from_app.send_nowait({"type": "lifespan.startup.complete"})


@functools.cache
def _client_source() -> bytes:
    """The packaged ``cable.js`` (read once: it cannot change under us)."""
    static = importlib.resources.files("trio_cable").joinpath("static")
    return static.joinpath("cable.js").read_bytes()


async def _serve_client(scope: Scope, send: Send) -> None:
    """``GET /cable.js``: the browser client, so no npm is needed."""
    if scope.get("method", "GET") not in ("GET", "HEAD"):
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [(b"allow", b"GET, HEAD")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    body = _client_source()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'.encode()
    status = 200
    for name, value in scope.get("headers", []):
        if name.lower() == b"if-none-match" and etag in value:
            status, body = 304, b""
    headers = [
        (b"content-type", b"text/javascript; charset=utf-8"),
        (b"etag", etag),
        (b"cache-control", b"no-cache"),  # revalidate: the etag makes it cheap
    ]
    if status == 200:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    head = scope.get("method") == "HEAD"
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _serve_metrics(cable: Cable, send: Send) -> None:
    await _serve_bytes(send, METRICS_CONTENT_TYPE, metrics_text(cable).encode())


async def _serve_bytes(send: Send, content_type: str, body: bytes) -> None:
    """``GET stats_path`` or ``metrics_path``: numbers, never cached."""
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _not_running(receive: Receive, send: Send) -> None:
    """A WebSocket at the cable's path while the cable is not running."""
    message = await receive()
    if message["type"] == "websocket.connect":
        log.error("cable is not running: does the server run the ASGI lifespan?")
        await send({"type": "websocket.close", "code": 1011})


async def _not_found(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"Not Found"})
