"""A small chat application the interop and flow tests run against.

The same :data:`cable` is served three ways:

* in process, through :func:`trio_cable.testing.cable_test_client`;
* by real Hypercorn: ``python -m hypercorn --worker-class trio
  tests.apps.chat_app:app --bind 127.0.0.1:PORT`` serves the cable at
  ``/cable`` and :func:`http_app` for everything else;
* by :func:`~trio_cable.serve_cable`: ``python -m tests.apps.chat_app
  --transport T --port P --http-port H`` serves the cable on ``P`` with
  the socket transport ``T`` (``direct``, the default, or
  ``trio-websocket``) and :func:`http_app` (through Hypercorn's ``serve``)
  on ``H``.

:func:`http_app` lets a test reach into a server process from outside:
``POST /broadcast?stream=NAME`` (JSON body) broadcasts with
``await cable.broadcast``, and ``GET /stats`` reports what the channels saw.

Channels:

* ``ChatChannel`` (param ``room``): streams from ``chat:<room>``, transmits
  ``{"welcome": room, "user": ...}`` from ``subscribed()`` (so it reaches the
  client before ``connected``); actions ``speak`` (broadcasts
  ``{"message": ..., "room": ...}``) and ``whoami``.
* ``EchoChannel`` (param ``topic``): streams from ``echo:<topic>``; the
  default action ``receive`` transmits ``{"echo": data}`` back.
* ``FeedChannel`` (param ``room``): streams from ``feed:<room>``, a stream
  that keeps history (``feed:*``), for the recovery tests.
* ``RejectingChannel``: transmits something, then always rejects (the
  transmitted message must never arrive).
* ``NotesChannel`` (param ``room``): streams from ``notes:<room>``; action
  ``note`` appends to ``self.notes`` (in its ``session_state``, so the
  notes follow a session restored on another worker) and transmits
  ``{"notes": [...], "user": ...}``.

``$pubsub`` (AnyCable's streams without a channel) is there when the
environment asks for it: ``CHAT_APP_STREAMS_SECRET`` (signed streams) and
``CHAT_APP_PUBLIC_STREAMS=1`` (public ones).

The connect hook takes the identity from the ``user`` query parameter
(counting ``connect <user>``) and refuses ``user=intruder`` as
``unauthorized``. ``CHAT_APP_SESSION_TTL`` sets ``session_ttl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.helpers.transports import TRANSPORTS, Transport
from trio_cable import Cable, Channel, Request, Unauthorized, serve_cable
from trio_cable._redis_presence import RedisPresence
from trio_cable.asgi import CableApp

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: What happened, keyed "<event> <identifier>" (e.g. "subscribed {...}") or
#: "<event>" alone; served at GET /stats so tests can see into a server.
events: Counter[str] = Counter()

#: The ``$pubsub`` channel's secret, when set (signed streams on); with
#: ``CHAT_APP_PUBLIC_STREAMS=1``, public streams too.
STREAMS_SECRET_ENV = "CHAT_APP_STREAMS_SECRET"
PUBLIC_STREAMS_ENV = "CHAT_APP_PUBLIC_STREAMS"
#: Seconds before a silent process's presence members leave (short in tests).
PRESENCE_EXPIRY_ENV = "CHAT_APP_PRESENCE_EXPIRY"
_expiry = float(os.environ.get(PRESENCE_EXPIRY_ENV) or 20.0)

cable = Cable(
    history=["feed:*"],
    history_limit=1000,
    streams_secret=os.environ.get(STREAMS_SECRET_ENV) or None,
    public_streams=os.environ.get(PUBLIC_STREAMS_ENV) == "1",
    presence_expiry=_expiry,
    presence_heartbeat=_expiry / 4,
    session_ttl=float(os.environ.get("CHAT_APP_SESSION_TTL") or 300),
)


@cable.connect
async def authenticate(request: Request) -> str | None:
    user = request.query.get("user")
    if user == "intruder":
        events["connection_rejected"] += 1
        raise Unauthorized()
    events[f"connect {user}"] += 1
    return user


@cable.channel
class ChatChannel(Channel):
    @property
    def room(self) -> str:
        return str(self.params.get("room", "lobby"))

    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        self.stream_from(f"chat:{self.room}")
        self.transmit({"welcome": self.room, "user": self.current_user})

    async def unsubscribed(self) -> None:
        events[f"unsubscribed {self.identifier}"] += 1

    async def speak(self, data: dict[str, Any]) -> None:
        self.broadcast(
            f"chat:{self.room}", {"message": data.get("message"), "room": self.room}
        )

    async def whoami(self) -> None:
        self.transmit({"user": self.current_user})

    async def tally(self, data: dict[str, Any]) -> dict[str, Any]:
        """Transmits and returns: a caller asking for the reply gets the
        return value; a client that did not ask sees only the transmit."""
        self.transmit({"tallying": data.get("n")})
        return {"tally": data.get("n")}


@cable.channel
class PresenceChannel(Channel):
    """Who is here in a room: clients join and leave (AnyCable's presence)."""

    async def subscribed(self) -> None:
        self.stream_from(f"presence:{self.params.get('room', 'lobby')}", presence=True)


@cable.channel
class EchoChannel(Channel):
    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        self.stream_from(f"echo:{self.params.get('topic', 'all')}")

    async def unsubscribed(self) -> None:
        events[f"unsubscribed {self.identifier}"] += 1

    async def receive(self, data: dict[str, Any]) -> None:
        self.transmit({"echo": data})


@cable.channel
class FeedChannel(Channel):
    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        self.stream_from(f"feed:{self.params.get('room', 'all')}")


@cable.channel
class RejectingChannel(Channel):
    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        self.transmit({"leaked": True})  # discarded by the rejection
        self.reject()

    async def unsubscribed(self) -> None:  # never runs: rejected subscriptions
        events[f"unsubscribed {self.identifier}"] += 1  # were never confirmed


@cable.channel
class NotesChannel(Channel):
    session_state = ("notes",)

    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        self.notes: list[Any] = []
        self.stream_from(f"notes:{self.params.get('room', 'all')}")

    async def unsubscribed(self) -> None:
        events[f"unsubscribed {self.identifier}"] += 1

    async def note(self, data: dict[str, Any]) -> None:
        self.notes.append(data.get("text"))
        self.transmit({"notes": self.notes, "user": self.current_user})


@cable.channel
class SlowChannel(Channel):
    """``subscribed()`` takes ``delay`` seconds: longer than a client's
    subscribe retry, so the client sends ``subscribe`` again meanwhile."""

    async def subscribed(self) -> None:
        events[f"subscribed {self.identifier}"] += 1
        await trio.sleep(float(self.params.get("delay", 1.7)))
        self.stream_from(f"slow:{self.params.get('room', 'lobby')}")

    async def unsubscribed(self) -> None:
        events[f"unsubscribed {self.identifier}"] += 1

    async def ping(self) -> None:
        self.transmit({"pong": True})


# -- the HTTP side ------------------------------------------------------------


def stats() -> dict[str, Any]:
    """What GET /stats answers (also handy in process)."""
    hub = cable.hub
    return {
        "pid": os.getpid(),
        "running": cable.is_running,
        "events": dict(events),
        "connections": len(cable.connections),
        "streams": {name: hub.subscribers(name) for name in hub.streams()},
        "redis": cable.stats().get("redis"),
        "presence": _presence_stats(),
    }


def _presence_stats() -> dict[str, Any] | None:
    """With Redis: whether presence's side is connected, and its heartbeats
    that reached Redis (a test waits past the time a worker reaps in)."""
    backend = cable.presence_tracker.backend
    if not isinstance(backend, RedisPresence):
        return None
    return {"connected": backend.connected, "beats": backend.beats}


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /broadcast?stream=NAME`` (JSON body), ``POST
    /disconnect?user=NAME`` (a remote disconnect, reconnect false) and
    ``GET /stats``."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1000})
        return
    body = await _read_body(receive)
    method, path = scope["method"], scope["path"]
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    if method == "GET" and path == "/stats":
        await _respond(send, 200, stats())
    elif method == "POST" and path == "/disconnect" and "user" in query:
        closed = await cable.disconnect(query["user"], reconnect=False)
        await _respond(send, 200, {"closed": closed})
    elif method == "POST" and path == "/broadcast" and "stream" in query:
        try:
            data = json.loads(body)
        except ValueError:
            await _respond(send, 400, {"error": "the body must be JSON"})
            return
        delivered = await cable.broadcast(query["stream"], data)
        await _respond(send, 200, {"delivered": delivered})
    else:
        await _respond(send, 404, {"error": f"no route {method} {path}"})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # http.disconnect
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(body)


async def _respond(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: For Hypercorn: the cable at /cable, http_app for the rest.
app = CableApp(cable, http_app)


# -- serve_cable ----------------------------------------------------------------


async def run_server(
    host: str, port: int, http_port: int, transport: Transport = "direct"
) -> None:
    """Serve the cable with serve_cable on ``transport`` and http_app
    beside it, until SIGINT or SIGTERM (then clients get
    ``server_restart``)."""
    serve_it = partial(serve_cable, transport=transport)
    config = Config()
    config.bind = [f"{host}:{http_port}"]
    config.errorlog = logging.getLogger("hypercorn.error")  # log via the root
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve_it, cable, host, port)
            await nursery.start(serve, http_app, config)
            logging.getLogger("chat_app").info(
                "cable on %d, http on %d", bound, http_port
            )
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve the test chat app with serve_cable."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, required=True, help="cable (WebSocket) port"
    )
    parser.add_argument("--http-port", type=int, required=True, help="http_app port")
    parser.add_argument("--transport", choices=TRANSPORTS, default="direct")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trio.run(run_server, args.host, args.port, args.http_port, args.transport)


if __name__ == "__main__":
    main()
