"""The demo chat app, in memory: rooms, messages, member counts, the form."""

from __future__ import annotations

from typing import Any

from trio_cable import demo
from trio_cable.testing import cable_test_client


async def call_http(
    method: str, path: str, body: bytes = b"", query: bytes = b""
) -> dict[str, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query}
    await demo.app(scope, receive, send)
    return {
        "status": sent[0]["status"],
        "headers": dict(sent[0]["headers"]),
        "body": sent[1]["body"],
    }


async def test_chat_members_and_form_posts() -> None:
    async with (
        demo.cable.running(),
        cable_test_client(demo.cable, query={"name": "ana"}) as ana,
    ):
        assert (await ana.subscribe("ChatChannel", room="trio"))[
            "type"
        ] == "confirm_subscription"
        assert (await ana.receive())["message"] == {"members": 1}
        async with cable_test_client(demo.cable, query={"name": "bo"}) as bo:
            await bo.subscribe("ChatChannel", room="trio")
            assert (await ana.receive())["message"] == {"members": 2}
            await bo.perform("ChatChannel", "speak", {"message": "hi"}, room="trio")
            frame = await ana.receive_matching(lambda f: "message" in f["message"])
            assert frame["message"] == {"user": "bo", "message": "hi"}
        assert (await ana.receive())["message"] == {"members": 1}
        response = await call_http(
            "POST", "/rooms/trio/messages", b"message=from+a+form&name=cy"
        )
        assert response["status"] == 303
        frame = await ana.receive()
        assert frame["message"] == {"user": "cy (form)", "message": "from a form"}
        rejected = await ana.subscribe("ChatChannel", room="nope")
        assert rejected["type"] == "reject_subscription"


async def test_pages() -> None:
    page = await call_http("GET", "/", query=b"room=random")
    assert page["status"] == 200
    assert b"#random" in page["body"]
    assert (await call_http("GET", "/missing"))["status"] == 404
