"""The server the browser tests run against: the demo, plus test pages.

``hypercorn --worker-class trio tests.browser.browser_app:app`` serves the
demo chat unchanged (its cable, channels and pages) and adds:

* ``/test/element?room=R``: a page with a ``<turbo-stream-channel>`` for
  ``ProbeChannel`` and a ``<ul id="items">``, with Turbo (from
  ``js/node_modules``) and no script of its own;
* ``/test/turbo-rails``: turbo-rails' ``<turbo-cable-stream-source>`` with a
  signed stream name and one with a tampered signature;
* ``POST /test/stream?stream=S`` (body: Turbo Stream HTML) broadcasts it;
* ``/stats`` and ``POST /broadcast?stream=S`` (JSON), which
  ``tests/interop/servers.py``'s ``ServerProcess`` speaks.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import trio

from trio_cable import ActionError, Channel, demo, turbo
from trio_cable.asgi import CableApp, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[2]
VENDOR = {
    "/vendor/turbo.js": "@hotwired/turbo/dist/turbo.es2017-esm.js",
    "/vendor/turbo-rails.js": "@hotwired/turbo-rails/app/assets/javascripts/turbo.js",
}
SECRET = "browser-test-secret"

cable = demo.cable
events: Counter[str] = Counter()
signer = turbo.register_streams_channel(cable, SECRET)


@cable.channel
class ProbeChannel(Channel):
    """Streams ``probe:<room>`` and counts its lifecycle for the tests."""

    async def subscribed(self) -> None:
        self.room = str(self.params.get("room"))
        self.stream_from(f"probe:{self.room}")
        events[f"subscribed {self.room}"] += 1

    async def unsubscribed(self) -> None:
        events[f"unsubscribed {self.room}"] += 1

    async def add(self, data: dict[str, Any]) -> int:
        """For ``call()``: transmits first, then returns the sum."""
        self.transmit({"adding": [data["a"], data["b"]]})
        return int(data["a"]) + int(data["b"])

    async def refuse(self) -> None:
        raise ActionError("invalid", "refused on purpose")

    async def stall(self) -> None:
        """Never returns (until the connection ends): a call times out."""
        await trio.sleep_forever()


@cable.channel
class PresenceProbeChannel(Channel):
    """Presence on ``presence-probe:<room>``: clients join and leave."""

    async def subscribed(self) -> None:
        room = self.params.get("room")
        self.stream_from(f"presence-probe:{room}", presence=True)


ELEMENT_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="module" src="/vendor/turbo.js"></script>
<script type="module" src="/cable.js"></script></head><body>
<turbo-stream-channel channel="ProbeChannel" params="{params}"></turbo-stream-channel>
<ul id="items"></ul></body></html>"""

TURBO_RAILS_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script type="module" src="/vendor/turbo-rails.js"></script></head><body>
<turbo-cable-stream-source id="good" channel="Turbo::StreamsChannel"
  signed-stream-name="{good}"></turbo-cable-stream-source>
<turbo-cable-stream-source id="bad" channel="Turbo::StreamsChannel"
  signed-stream-name="{bad}"></turbo-cable-stream-source>
<ul id="board"></ul></body></html>"""


def turbo_rails_page() -> str:
    good = signer.sign("board", 1)
    # The same signature on another stream's name: must not verify.
    forged = turbo.StreamSigner("x").sign("board", 2).split("--")[0]
    bad = f"{forged}--{good.split('--')[1]}"
    return TURBO_RAILS_PAGE.format(good=html.escape(good), bad=html.escape(bad))


async def app_http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    if path == "/stats":
        stats = {"running": cable.is_running, "events": dict(events)}
        await respond(send, 200, json.dumps(stats).encode(), b"application/json")
    elif path == "/broadcast":
        data = json.loads(await read_body(receive) or b"null")
        delivered = await cable.broadcast(query["stream"], data)
        body = json.dumps({"delivered": delivered}).encode()
        await respond(send, 200, body, b"application/json")
    elif path == "/test/stream":
        body = (await read_body(receive)).decode()
        delivered = await cable.broadcast(query["stream"], body)
        await respond(send, 200, str(delivered).encode(), b"text/plain")
    elif path == "/test/element":
        params = html.escape(json.dumps({"room": query.get("room", "x")}))
        page = ELEMENT_PAGE.format(params=params).encode()
        await respond(send, 200, page, b"text/html; charset=utf-8")
    elif path == "/test/turbo-rails":
        page = turbo_rails_page().encode()
        await respond(send, 200, page, b"text/html; charset=utf-8")
    elif path in VENDOR:
        source = ROOT / "js" / "node_modules" / VENDOR[path]
        await respond(send, 200, source.read_bytes(), b"text/javascript")
    else:
        await demo.http_app(scope, receive, send)


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send: Send, status: int, body: bytes, kind: bytes) -> None:
    # Content-Length, not chunked: servers.py's little HTTP client wants it.
    headers = [(b"content-type", kind), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = CableApp(cable, app_http)
