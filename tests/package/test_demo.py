"""The demo chat app, in memory: rooms, Turbo Streams, who is here (presence),
the form."""

from __future__ import annotations

import re
from collections import deque
from typing import Any

import pytest
import trio
import trio.testing

from trio_cable import demo
from trio_cable.testing import cable_test_client


async def call_http(
    method: str,
    path: str,
    body: bytes = b"",
    query: bytes = b"",
    cookie: str | None = None,
) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [] if cookie is None else [(b"cookie", cookie.encode())]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": headers,
    }
    await demo.app(scope, receive, send)
    return {
        "status": sent[0]["status"],
        "headers": dict(sent[0]["headers"]),
        "body": sent[-1]["body"],
    }


def members(frame: dict[str, Any]) -> str:
    message = frame["message"]
    assert isinstance(message, str), message
    found = re.fullmatch(
        r'<turbo-stream action="update" target="members"><template>(.*)</template>'
        r"</turbo-stream>",
        message,
    )
    assert found is not None, message
    return found.group(1)


async def test_rooms_members_and_messages_as_turbo_streams(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with (
        demo.cable.running(),
        cable_test_client(demo.cable, cookies={"demo_name": "ana"}) as ana,
    ):
        reply = await ana.subscribe("ChatChannel", room="trio")
        assert reply["type"] == "confirm_subscription"
        assert members(await ana.receive()) == "ana"
        async with cable_test_client(demo.cable, cookies={"demo_name": "bo"}) as bo:
            await bo.subscribe("ChatChannel", room="trio")
            assert members(await ana.receive()) == "ana, bo"
            # A second tab of bo's: one member, nothing to re-render.
            async with cable_test_client(
                demo.cable, cookies={"demo_name": "bo"}
            ) as bo2:
                await bo2.subscribe("ChatChannel", room="trio")
                await bo2.unsubscribe("ChatChannel", room="trio")
            await bo.perform("ChatChannel", "speak", {"message": "<hi>"}, room="trio")
            frame = await ana.receive_matching(lambda f: "append" in f["message"])
            html = frame["message"]
            assert html.startswith(
                '<turbo-stream action="append" target="messages"><template><li id="'
            )
            assert "<b>bo</b> &lt;hi&gt;" in html, "user text is escaped"
        # bo's tab closed: bo leaves after the grace (a reload would not).
        closed = trio.current_time()
        assert members(await ana.receive()) == "ana"
        assert trio.current_time() - closed >= demo.cable.options.presence_grace
        rejected = await ana.subscribe("ChatChannel", room="nope")
        assert rejected["type"] == "reject_subscription"


async def test_the_form_broadcasts_a_turbo_stream() -> None:
    async with (
        demo.cable.running(),
        cable_test_client(demo.cable) as ana,
    ):
        await ana.subscribe("ChatChannel", room="random")
        await ana.receive()  # the member count
        response = await call_http(
            "POST",
            "/rooms/random/messages",
            b"message=from+a+form",
            cookie="demo_name=cy",
        )
        assert response["status"] == 303
        assert response["headers"][b"location"] == b"/rooms/random"
        frame = await ana.receive()
        assert "<b>cy</b> from a form" in frame["message"]
        assert 'action="append" target="messages"' in frame["message"]
        page = await call_http("GET", "/rooms/random", cookie="demo_name=cy")
        assert b"<b>cy</b> from a form" in page["body"], "the page shows the history"
        empty = await call_http("POST", "/rooms/random/messages", b"message=+")
        assert empty["status"] == 303


async def test_pages() -> None:
    assert (await call_http("GET", "/"))["headers"][b"location"] == b"/rooms/general"
    page = await call_http("GET", "/rooms/trio", query=b"name=dee")
    assert page["status"] == 200
    assert b"<h1>#trio</h1>" in page["body"]
    assert b'<script type="module" src="/cable.js">' in page["body"]
    assert (
        b'<turbo-stream-channel channel="ChatChannel" '
        b'params="{&quot;room&quot;: &quot;trio&quot;}">' in page["body"]
    )
    assert page["headers"][b"set-cookie"].startswith(b"demo_name=dee;")
    guest = await call_http("GET", "/rooms/general")
    assert guest["headers"][b"set-cookie"].startswith(b"demo_name=guest-")
    known = await call_http("GET", "/rooms/general", cookie="demo_name=ana")
    assert b"set-cookie" not in known["headers"]
    assert (await call_http("GET", "/rooms/nope"))["status"] == 404
    assert (await call_http("GET", "/rooms/trio/messages"))["status"] == 405
    script = await call_http("GET", "/cable.js")
    assert script["headers"][b"content-type"] == b"text/javascript; charset=utf-8"
    assert b"customElements.define" in script["body"]


async def test_favicon_times_and_the_empty_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    icon = await call_http("GET", "/favicon.svg")
    assert icon["status"] == 200
    assert icon["headers"][b"content-type"] == b"image/svg+xml"
    assert icon["body"].startswith(b"<svg")
    item = demo.render_message("ana", "hi", "cable")
    assert re.search(
        r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">\d\d:\d\d</time>', item
    )
    monkeypatch.setitem(demo.history, "trio", deque())
    page = demo.render_page("trio", "ana")
    assert '<link rel="icon" href="/favicon.svg"' in page
    # nothing between the tags: the CSS hint (:not(:has(li))) shows
    assert '<ul id="messages"></ul>' in page
