"""The demo chat: rooms, live messages, who is here, Turbo Streams.

Run it with ``nox -s demo`` (or ``hypercorn --worker-class trio
trio_cable.demo:app``) and open http://127.0.0.1:8000. Every room page
holds a ``<turbo-stream-channel>`` element from ``/cable.js``: the server
broadcasts Turbo Streams (a new ``<li>``, the list of who is here) and the page
applies them with no JavaScript of its own. Messages come in two ways, both
live in every open tab of the room: over the cable (the ``speak`` action)
and through a plain HTML form (``POST /rooms/<room>/messages``), which
broadcasts from the HTTP request. With ``TRIO_CABLE_REDIS_URL`` set, the
cable shares broadcasts and presence through Redis: every worker lists
the same members.
"""

from __future__ import annotations

import html
import itertools
import json
import secrets
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from . import turbo
from ._cable import Cable
from ._channel import Channel
from ._presence import PresenceEvent
from ._request import Request
from .asgi import CableApp, Receive, Scope, Send

__all__ = ["ROOMS", "ChatChannel", "app", "cable"]

ROOMS = ("general", "random", "trio")
HISTORY = 50  # messages a room page shows when it loads
NAME_COOKIE = "demo_name"

# A reload, or the form's redirect, comes back within the grace: the
# member list does not flap; a closed tab leaves 5 s later.
cable = Cable(presence_grace=5.0)
history: dict[str, deque[str]] = {room: deque(maxlen=HISTORY) for room in ROOMS}
_message_ids = itertools.count(1)


def clean_name(raw: str | None) -> str | None:
    name = " ".join((raw or "").split())[:32]
    return name or None


@cable.connect
async def identify(request: Request) -> str:
    """Anyone may chat, under the name the page's cookie carries."""
    return clean_name(request.cookies.get(NAME_COOKIE)) or "anonymous"


def render_message(user: str, text: str, via: str, when: datetime | None = None) -> str:
    """One message's ``<li>``: the page's first render and every live
    update use it, so the markup has one source. The time is UTC; the
    page shows it in the reader's own time zone."""
    number = next(_message_ids)
    when = when or datetime.now(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        f'<li id="message_{number}" class="message via-{via}">'
        f'<time datetime="{stamp}">{when:%H:%M}</time> '
        f"<b>{html.escape(user)}</b> {html.escape(text)}"
        f' <small title="sent {via}">{via}</small></li>'
    )


def post_message(room: str, user: str, text: str, via: str) -> str | None:
    """Store and render a message; the Turbo Stream to broadcast, or None."""
    text = text.strip()[:500]
    if room not in ROOMS or not text:
        return None
    item = render_message(user, text, via)
    history[room].append(item)
    return turbo.append("messages", item)


def render_members(members: dict[str, Any]) -> str:
    """Who is here: the members' names, in order."""
    names = sorted(
        str(info.get("name", id)) if isinstance(info, dict) else id
        for id, info in members.items()
    )
    return ", ".join(html.escape(name) for name in names) or "nobody"


@cable.on_presence
async def show_members(event: PresenceEvent) -> None:
    """Each join or leave (once, in whichever process announces it; the
    list is every process's, through Redis) re-renders the room's list."""
    if not event.stream.startswith("chat:"):
        return  # another channel's presence (an app built on the demo)
    members = await cable.presence(event.stream)
    await cable.broadcast(
        event.stream, turbo.update("members", render_members(members))
    )


@cable.channel
class ChatChannel(Channel):
    """One room: messages in, Turbo Streams out, and who is here (presence:
    every tab of one name is one member)."""

    #: The pages get the member list as a Turbo Stream, not raw events.
    presence_events = False

    async def subscribed(self) -> None:
        room = self.params.get("room")
        if room not in ROOMS:
            self.reject()
            return
        self.room = str(room)
        self.stream_from(f"chat:{self.room}", presence=True)
        user = str(self.current_user)
        self.presence.join(user, {"name": user})

    async def speak(self, data: dict[str, Any]) -> None:
        stream = post_message(
            self.room, str(self.current_user), str(data.get("message", "")), "cable"
        )
        if stream is not None:
            self.broadcast(f"chat:{self.room}", stream)


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The pages and the form endpoint (everything but /cable, /cable.js)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    parts = path.strip("/").split("/")
    query = dict(parse_qsl(scope.get("query_string", b"").decode()))
    request = Request(scope)
    if path == "/":
        await _redirect(send, "/rooms/general")
    elif path == "/favicon.svg":
        svg = [
            (b"content-type", b"image/svg+xml"),
            (b"cache-control", b"max-age=86400"),
        ]
        await _respond(send, 200, FAVICON, svg)
    elif len(parts) == 3 and parts[0] == "rooms" and parts[2] == "messages":
        if scope["method"] != "POST":
            await _respond(send, 405, b"POST only", [(b"allow", b"POST")])
            return
        form = dict(parse_qsl((await _read_body(receive)).decode()))
        user = clean_name(request.cookies.get(NAME_COOKIE)) or "anonymous"
        stream = post_message(parts[1], user, form.get("message", ""), "form")
        if stream is not None:
            await cable.broadcast(f"chat:{parts[1]}", stream)
        await _redirect(send, f"/rooms/{quote(parts[1])}")
    elif len(parts) == 2 and parts[0] == "rooms" and parts[1] in ROOMS:
        name = clean_name(query.get("name")) or clean_name(
            request.cookies.get(NAME_COOKIE)
        )
        headers = []
        if name is None or query.get("name"):
            name = name or f"guest-{secrets.randbelow(1000):03d}"
            cookie = f"{NAME_COOKIE}={quote(name)}; Path=/; SameSite=Lax"
            headers.append((b"set-cookie", cookie.encode()))
        members = await cable.presence(f"chat:{parts[1]}")
        page = render_page(parts[1], name, members)
        headers.append((b"content-type", b"text/html; charset=utf-8"))
        await _respond(send, 200, page.encode(), headers)
    else:
        await _respond(send, 404, b"Not Found", [(b"content-type", b"text/plain")])


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body") or len(body) > 65536:
            return body


async def _redirect(send: Send, location: str) -> None:
    await _respond(send, 303, b"", [(b"location", location.encode())])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def render_page(room: str, name: str, members: dict[str, Any] | None = None) -> str:
    """A room's page, with its recent messages and who is here."""
    links = " ".join(
        f'<a href="/rooms/{r}"{" aria-current=page" if r == room else ""}>#{r}</a>'
        for r in ROOMS
    )
    values = {
        "{{ROOM}}": html.escape(room),
        "{{PARAMS}}": html.escape(json.dumps({"room": room})),
        "{{NAME}}": html.escape(name),
        "{{ROOMS}}": links,
        "{{MEMBERS}}": render_members(members or {}),
        "{{MESSAGES}}": "".join(history[room]),
    }
    page = PAGE
    for key, value in values.items():
        page = page.replace(key, value)
    return page


app = CableApp(cable, http_app, tune_gc=True)

#: A speech bubble on trio blue: the tab's icon (no 404 for /favicon.ico).
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect width="32" height="32" rx="7" fill="#2e5e9e"/>'
    b'<path d="M7 9h18v11H14l-5 4v-4H7z" fill="#fff"/></svg>'
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>#{{ROOM}} · trio_cable chat</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<script type="module" src="/cable.js"></script>
<style>
body{font:16px/1.4 system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;
  color:#1d1d1f}
header{display:flex;align-items:baseline;gap:1em;flex-wrap:wrap}
h1{margin:0}
nav a{margin-right:.6em}
nav a[aria-current]{font-weight:bold;text-decoration:none}
#presence{color:#555}
#status{font-size:.85em;padding:.1em .6em;border-radius:1em;background:#f6d6a8}
#status::after{content:attr(data-note)}
body:has(turbo-stream-channel[connected]) #status{background:#bfe8c4}
body:has(turbo-stream-channel[connected]) #status::after{content:"live"}
#messages{list-style:none;padding:.5em;margin:1em 0;min-height:12em;max-height:60vh;
  overflow-y:auto;border:1px solid #ccc;border-radius:.4em}
#messages li{padding:.25em .4em}
#messages:not(:has(li))::before{content:"No messages yet: say hello below.";color:#888}
#messages time{color:#888;font-size:.8em;font-variant-numeric:tabular-nums}
#messages li:nth-child(odd){background:#f5f5f7}
#messages small{color:#888;font-size:.75em}
form{display:flex;gap:.5em;margin:.5em 0}
form input[name=message]{flex:1;padding:.4em}
footer{color:#777;font-size:.85em;margin-top:2em}
</style></head>
<body>
<turbo-stream-channel channel="ChatChannel" params="{{PARAMS}}"></turbo-stream-channel>
<header>
<h1>#{{ROOM}}</h1>
<span id="presence"><span id="members">{{MEMBERS}}</span> here</span>
<span id="status" data-note="connecting…"></span>
</header>
<nav>{{ROOMS}}</nav>
<ul id="messages">{{MESSAGES}}</ul>
<form id="composer" autocomplete="off">
<input name="message" placeholder="Message #{{ROOM}} as {{NAME}}" aria-label="message"
  autofocus>
<button>Send over the cable</button>
</form>
<form id="http-form" method="post" action="/rooms/{{ROOM}}/messages" autocomplete="off">
<input name="message" placeholder="…or post a plain HTML form"
  aria-label="form message">
<button>Send with an HTTP form</button>
</form>
<footer>You are <b id="me">{{NAME}}</b> (add <code>?name=…</code> to the address
to change that). Served by trio_cable: one WebSocket, Turbo Streams over the
cable.</footer>
<script type="module">
// The only script of the page: send the composer's text over the cable, say
// when a lost connection is retried, and show times in the reader's zone.
// Everything that appears on the page arrives as a Turbo Stream.
import { cable } from "/cable.js"
const channel = document.querySelector("turbo-stream-channel")
const status = document.getElementById("status")
let ticking = null
function showState() {
  clearInterval(ticking)
  ticking = null
  if (cable.state === "waiting" && cable.retryAt !== null) {
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((cable.retryAt - Date.now()) / 1000))
      status.dataset.note = `offline: retrying in ${seconds} s…`
    }
    tick()
    ticking = setInterval(tick, 250)
  } else if (cable.state === "failed" || cable.state === "closed") {
    status.dataset.note = "offline"
  } else {
    status.dataset.note = "connecting…"
  }
}
cable.addEventListener("statechange", showState)
function localTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]:not([data-local])")) {
    const when = new Date(time.dateTime)
    const hhmm = { hour: "2-digit", minute: "2-digit" }
    time.textContent = when.toLocaleTimeString([], hhmm)
    time.title = when.toLocaleString()
    time.dataset.local = ""
  }
}
const messages = document.getElementById("messages")
localTimes(messages)
new MutationObserver(() => localTimes(messages)).observe(messages, { childList: true })
document.getElementById("composer").addEventListener("submit", (event) => {
  event.preventDefault()
  const input = event.target.elements.message
  if (input.value.trim() && channel.perform("speak", { message: input.value })) {
    input.value = ""
  }
})
</script>
</body></html>
"""
