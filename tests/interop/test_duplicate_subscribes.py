"""Duplicate ``subscribe`` with the real clients and a slow ``subscribed()``.

Both clients re-send an unanswered ``subscribe``: the official
``@rails/actioncable`` client every 500 ms, ``@anycable/web`` once after
5 s. Against ``chat_app.SlowChannel``, whose ``subscribed()`` takes longer
than that, the server must answer the subscription once (as Rails and
anycable-go do): a second confirmation runs the official client's
``connected()`` again and makes ``@anycable/web`` unsubscribe.

Every test runs against each server kind (Hypercorn, and ``serve_cable``
on the direct and trio-websocket transports).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import trio

from tests.interop.nodeclient import ANYCABLE_DRIVER, open_ac_client
from tests.interop.servers import ServerProcess

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]

Event = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def identifier(*, sort: bool = False, **params: str) -> str:
    """The identifier a client sends for these params: the official client
    keeps their order (``channel`` first), ``@anycable/web`` sorts them."""
    return json.dumps(
        {"channel": "SlowChannel", **params}, separators=(",", ":"), sort_keys=sort
    )


async def test_official_client_connected_once_per_subscription(
    cable_server: ServerProcess,
) -> None:
    """Two subscriptions to one identifier whose ``subscribed()`` takes
    1.7 s (three retries of the client's): one ``confirm_subscription``
    frame, ``connected()`` once for each, ``subscribed()`` run once, and
    broadcasts reach both once."""
    server = cable_server
    room = unique("slow")
    params = {"room": room, "delay": "1.7"}
    async with open_ac_client() as ac:
        with trio.fail_after(30):
            await ac.send(
                {"cmd": "connect", "url": f"{server.url}?user=ann", "trace": True}
            )
            await ac.expect({"event": "frame", "data": '{"type":"welcome"}'})
            for key in ("a", "b"):
                await ac.send(
                    {
                        "cmd": "subscribe",
                        "key": key,
                        "channel": "SlowChannel",
                        "params": params,
                    }
                )
            await ac.expect({"event": "connected", "key": "a"})
            await ac.expect({"event": "connected", "key": "b"})
            await server.broadcast(f"slow:{room}", {"n": 1})
            for key in ("a", "b"):
                await ac.expect({"event": "received", "key": key, "data": {"n": 1}})
            # The client has stopped re-sending: a late second confirmation
            # would come within its retry interval (500 ms) after the first.
            await ac.assert_no_event({"event": "connected"}, within=1.6)
            await ac.assert_no_event({"event": "received"}, within=0)
        confirms = [
            e
            for e in ac.history
            if e["event"] == "frame"
            and json.loads(e["data"]).get("type") == "confirm_subscription"
        ]
        assert len(confirms) == 1, ac.history
        assert json.loads(confirms[0]["data"])["identifier"] == identifier(**params)
        assert [e for e in ac.history if e["event"] == "connected"] == [
            {
                "event": "connected",
                "key": key,
                "reconnected": False,
                "identifier": identifier(**params),
            }
            for key in ("a", "b")
        ]
        events = (await server.stats())["events"]
        assert events[f"subscribed {identifier(**params)}"] == 1
        bad = [e for e in ac.history if e["event"] in ("uncaught", "error")]
        assert bad == []


async def test_anycable_web_keeps_a_slow_subscription(
    cable_server: ServerProcess,
) -> None:
    """``subscribed()`` takes 5.5 s, past ``@anycable/web``'s 5 s retry (and
    well before it gives up at 10 s): the client is subscribed once, sends
    no ``unsubscribe`` (the server never runs ``unsubscribed()``), and later
    broadcasts arrive."""
    server = cable_server
    room = unique("slow")
    params = {"room": room, "delay": "5.5"}
    async with open_ac_client(driver=ANYCABLE_DRIVER) as client:
        with trio.fail_after(30):
            await client.send({"cmd": "connect", "url": f"{server.url}?user=bo"})
            await client.expect({"event": "cable_connect"})
            await client.send(
                {
                    "cmd": "subscribe",
                    "key": "s",
                    "channel": "SlowChannel",
                    "params": params,
                }
            )
            await client.expect({"event": "subscribed", "key": "s"}, timeout=20)
            await server.broadcast(f"slow:{room}", {"n": 1})
            await client.expect({"event": "message", "key": "s", "data": {"n": 1}})
            # A spurious unsubscribe would be sent on a second confirmation,
            # right after the first; ask the channel (which answers after
            # every earlier command of this socket) and broadcast again.
            await client.send(
                {"cmd": "perform", "key": "s", "action": "ping", "data": {}}
            )
            await client.expect(
                {"event": "message", "key": "s", "data": {"pong": True}}
            )
            await server.broadcast(f"slow:{room}", {"n": 2})
            await client.expect({"event": "message", "key": "s", "data": {"n": 2}})
        # (the channel's "info" events report the protocol's own news, such
        # as a history answer; they are not part of its lifecycle)
        mine = [
            e["event"]
            for e in client.history
            if e.get("key") == "s" and e["event"] != "info"
        ]
        assert sorted(mine) == [
            "connect",
            "message",
            "message",
            "message",
            "subscribed",
        ]
        events = (await server.stats())["events"]
        ident = identifier(sort=True, **params)
        assert events[f"subscribed {ident}"] == 1
        assert f"unsubscribed {ident}" not in events
        bad = [e for e in client.history if e["event"] in ("uncaught", "error")]
        assert bad == [], client.history
