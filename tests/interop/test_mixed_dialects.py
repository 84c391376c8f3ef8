"""The reference Channels guide's dialect (``proper-channels-v1-json``)
beside the official ``@rails/actioncable`` client, on every server kind
(Hypercorn, and ``serve_cable`` on each socket transport): one stream,
both clients, the same broadcasts. The guide-dialect client is
trio-websocket's client offering the guide's subprotocol, so the
negotiation is real too; the in-memory transport is
``tests/server/test_guide_in_memory.py``'s."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.interop.nodeclient import NodeClient, open_ac_client
from tests.interop.servers import ServerProcess

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]

GUIDE = "proper-channels-v1-json"


@asynccontextmanager
async def guide_client(url: str) -> AsyncIterator[WebSocketConnection]:
    async with open_websocket_url(url, subprotocols=[GUIDE]) as ws:
        assert ws.subprotocol == GUIDE
        yield ws


async def send(ws: WebSocketConnection, **frame: Any) -> None:
    await ws.send_message(json.dumps(frame))


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


def received(data: Any) -> dict[str, Any]:
    """The official client's ``received`` event for subscription ``k``."""
    return {"event": "received", "key": "k", "data": data}


async def official_subscribed(ac: NodeClient, url: str, room: str) -> None:
    await ac.send({"cmd": "connect", "url": url})
    await ac.expect({"event": "socket_open"})
    params = {"room": room}
    await ac.send(
        {"cmd": "subscribe", "key": "k", "channel": "ChatChannel", "params": params}
    )
    await ac.expect({"event": "connected", "key": "k"})


async def test_mixed_clients_on_one_stream_get_the_same_broadcasts(
    cable_server: ServerProcess,
) -> None:
    server = cable_server
    room = f"guide-{uuid.uuid4().hex[:8]}"
    chat = {"channel": "ChatChannel", "params": {"room": room}}
    with trio.fail_after(30):
        async with (
            open_ac_client() as ac,
            guide_client(f"{server.url}?user=gus") as ws,
        ):
            await official_subscribed(ac, f"{server.url}?user=ann", room)
            await ac.expect(received({"welcome": room, "user": "ann"}))

            await send(ws, command="subscribe", **chat)
            # what subscribed() transmitted, then the confirmation: no welcome,
            # no ping before them, in the guide's shapes
            assert await receive(ws) == {
                "type": "message",
                **chat,
                "data": {"welcome": room, "user": "gus"},
            }
            assert await receive(ws) == {"type": "confirm_subscription", **chat}

            # a broadcast from outside any channel reaches both
            assert await server.broadcast(f"chat:{room}", {"news": 1}) == 2
            assert await receive(ws) == {"type": "message", **chat, "data": {"news": 1}}
            await ac.expect(received({"news": 1}))

            # the guide client speaks; both hear it
            await send(
                ws, command="message", action="speak", data={"message": "hi"}, **chat
            )
            said = {"message": "hi", "room": room}
            assert await receive(ws) == {"type": "message", **chat, "data": said}
            await ac.expect(received(said))

            # the official client speaks; both hear it
            await ac.send(
                {
                    "cmd": "perform",
                    "key": "k",
                    "action": "speak",
                    "data": {"message": "yo"},
                }
            )
            said = {"message": "yo", "room": room}
            await ac.expect(received(said))
            assert await receive(ws) == {"type": "message", **chat, "data": said}

            # calls work in the guide's dialect too
            tally = {"action": "tally", "data": {"n": 3}, "ref": 1}
            await send(ws, command="message", **tally, **chat)
            tallying = {"tallying": 3}
            assert await receive(ws) == {"type": "message", **chat, "data": tallying}
            assert await receive(ws) == {
                "type": "reply",
                **chat,
                "ref": 1,
                "result": {"tally": 3},
            }

            # the guide's errors; the connection carries on
            await send(ws, command="message", channel="ChatChannel", params={})
            error = await receive(ws)
            assert (error["type"], error["reason"]) == ("error", "not_subscribed")
            await send(ws, command="subscribe", channel="NoSuchChannel")
            rejected = await receive(ws)
            assert rejected.pop("message").startswith("no channel 'NoSuchChannel'")
            assert rejected == {
                "type": "reject_subscription",
                "channel": "NoSuchChannel",
                "params": {},
                "reason": "unknown_channel",
            }
            await send(ws, command="unsubscribe", **chat)
            # whoami on the official side proves the unsubscribe was handled
            await ac.send({"cmd": "perform", "key": "k", "action": "whoami"})
            await ac.expect(received({"user": "ann"}))
            assert await server.broadcast(f"chat:{room}", {"news": 2}) == 1
            await ac.expect(received({"news": 2}))
            bad = [e for e in ac.history if e["event"] in ("uncaught", "error")]
            assert bad == []
