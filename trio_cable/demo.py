"""The demo chat: rooms, live messages, live member counts.

Run it with ``hypercorn --worker-class trio trio_cable.demo:app`` and open
http://127.0.0.1:8000. Messages posted over the cable (the page's input)
and over a plain HTML form (``POST /rooms/<room>/messages``, which
broadcasts from an HTTP request) appear live in every open tab of the room.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

from ._cable import Cable
from ._channel import Channel
from .asgi import CableApp, Receive, Scope, Send

__all__ = ["ChatChannel", "app", "cable"]

ROOMS = ("general", "random", "trio")

cable = Cable()
members: Counter[str] = Counter()


@cable.connect
async def identify(request: Any) -> str:
    """Anyone may chat; the name comes from the page's query string."""
    name = request.query.get("name", "").strip()[:32]
    return name or "anonymous"


@cable.channel
class ChatChannel(Channel):
    """One room: its messages and how many are in it."""

    async def subscribed(self) -> None:
        room = self.params.get("room")
        if room not in ROOMS:
            self.reject()
            return
        self.room = str(room)
        self.stream_from(f"chat:{self.room}")
        members[self.room] += 1
        self.broadcast(f"chat:{self.room}", {"members": members[self.room]})

    async def unsubscribed(self) -> None:
        members[self.room] -= 1
        self.broadcast(f"chat:{self.room}", {"members": members[self.room]})

    async def speak(self, data: dict[str, Any]) -> None:
        text = str(data.get("message", "")).strip()[:500]
        if text:
            message = {"user": self.current_user, "message": text}
            self.broadcast(f"chat:{self.room}", message)


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The pages and the form endpoint (everything but /cable)."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if scope["method"] == "POST" and path.startswith("/rooms/"):
        room = path.split("/")[2]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = dict(parse_qsl(body.decode()))
        text = form.get("message", "").strip()[:500]
        if room in ROOMS and text:
            user = form.get("name", "").strip()[:32] or "anonymous"
            payload = {"user": f"{user} (form)", "message": text}
            await cable.broadcast(f"chat:{room}", payload)
        await _respond(send, 303, b"", [(b"location", f"/?room={room}".encode())])
        return
    if path == "/":
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        room = query.get("room", ROOMS[0])
        room = room if room in ROOMS else ROOMS[0]
        page = PAGE.replace("{{ROOM}}", html.escape(room)).replace(
            "{{ROOM_JSON}}", json.dumps(room)
        )
        links = " ".join(f'<a href="/?room={r}">#{r}</a>' for r in ROOMS)
        page = page.replace("{{ROOMS}}", links)
        await _respond(send, 200, page.encode(), [(b"content-type", b"text/html")])
        return
    await _respond(send, 404, b"Not Found", [(b"content-type", b"text/plain")])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = CableApp(cable, http_app)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>trio_cable chat: #{{ROOM}}</title>
<style>
body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}
#messages{list-style:none;padding:0;min-height:10em;border:1px solid #ccc}
#messages li{padding:.2em .5em}
</style></head>
<body>
<h1>#{{ROOM}} <small id="members">0</small> <small>here</small></h1>
<nav>{{ROOMS}}</nav>
<p id="status">connecting…</p>
<ul id="messages"></ul>
<form id="composer"><input name="message" autocomplete="off" autofocus>
<button>Send over the cable</button></form>
<form method="post" action="/rooms/{{ROOM}}/messages">
<input name="message" autocomplete="off"><input type="hidden" name="name" id="formname">
<button>Send with an HTTP form</button></form>
<script type="module">
// A minimal actioncable-v1-json client; the full one ships as /cable.js.
const room = {{ROOM_JSON}};
const name = localStorage.name ||= "guest" + Math.floor(Math.random() * 1000);
document.getElementById("formname").value = name;
const identifier = JSON.stringify({channel: "ChatChannel", room});
const proto = location.protocol === "https:" ? "wss:" : "ws:";
let socket;
function connect() {
  const url = `${proto}//${location.host}/cable?name=${encodeURIComponent(name)}`;
  socket = new WebSocket(url, ["actioncable-v1-json", "actioncable-unsupported"]);
  socket.onopen = () => {
    socket.send(JSON.stringify({command: "subscribe", identifier}));
  };
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "confirm_subscription") status(`connected as ${name}`);
    else if (frame.type === "disconnect") status(`disconnected: ${frame.reason}`);
    else if (frame.identifier === identifier && frame.message) received(frame.message);
  };
  socket.onclose = () => { status("reconnecting…"); setTimeout(connect, 1000); };
}
function status(text) { document.getElementById("status").textContent = text; }
function received(data) {
  if ("members" in data) document.getElementById("members").textContent = data.members;
  if ("message" in data) {
    const li = document.createElement("li");
    li.textContent = `${data.user}: ${data.message}`;
    document.getElementById("messages").append(li);
  }
}
document.getElementById("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.message;
  const data = JSON.stringify({action: "speak", message: input.value});
  socket.send(JSON.stringify({command: "message", identifier, data}));
  input.value = "";
});
connect();
</script></body></html>
"""
