"""Presence with three real clients of three kinds on one Hypercorn
server (tests/browser/browser_app.py): cable.js in headless Chromium,
``@anycable/web`` in Node and the Python client. The Chromium page and
the Node client are one member ("ann") in two tabs: the list has two
members; the page going away announces nothing; the last tab's explicit
leave announces one leave, at once."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.browser.browser_driver import Browser, BrowserServer
from tests.interop.nodeclient import ANYCABLE_DRIVER, open_ac_client
from trio_cable.client import Message, PresenceChanged, open_cable_client

pytestmark = pytest.mark.node

JOIN_IN_PAGE = """(async () => {
  const { createCable } = await import("/cable.js")
  const cable = window.presenceCable = createCable()
  window.presenceEvents = []
  const sub = window.presenceSub = cable.subscribe(
    "PresenceProbeChannel", { room: "three" }, {
      joined(id, info) { window.presenceEvents.push(["join", id, info]) },
      left(id) { window.presenceEvents.push(["leave", id]) },
    })
  while (!sub.confirmed) await new Promise((r) => setTimeout(r, 20))
  sub.presence.join("ann", { from: "chromium" })
  return true
})()"""

INFO_IN_PAGE = "window.presenceSub.presence.info()"


async def next_change(sub: Any) -> PresenceChanged:
    while True:
        event = await sub.receive_event()
        if isinstance(event, PresenceChanged):
            return event


async def test_cable_js_anycable_web_and_python_share_one_presence(
    fresh_server: BrowserServer, browser: Browser
) -> None:
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(open_cable_client(fresh_server.url))
        py = await stack.enter_async_context(
            client.subscribe("PresenceProbeChannel", room="three")
        )
        await py.presence.join("py", {"from": "python"})
        assert await next_change(py) == PresenceChanged(
            "join", "py", {"from": "python"}
        )

        await browser.open("tab1", fresh_server.http_url("/test/element?room=unused"))
        assert await browser.evaluate("tab1", JOIN_IN_PAGE) is True
        assert await next_change(py) == PresenceChanged(
            "join", "ann", {"from": "chromium"}
        )

        node = await stack.enter_async_context(open_ac_client(driver=ANYCABLE_DRIVER))
        await node.send({"cmd": "connect", "url": fresh_server.url})
        await node.send(
            {
                "cmd": "subscribe",
                "key": "p",
                "channel": "PresenceProbeChannel",
                "params": {"room": "three"},
            }
        )
        await node.expect({"event": "subscribed", "key": "p"})
        await node.send(
            {"cmd": "presence_join", "key": "p", "id": "ann", "info": {"from": "node"}}
        )
        await node.send({"cmd": "presence_info", "key": "p"})
        state = await node.expect({"event": "presence_state", "key": "p"})
        assert state["state"] == {"py": {"from": "python"}, "ann": {"from": "node"}}
        members = await browser.evaluate("tab1", INFO_IN_PAGE)
        assert members == {"py": {"from": "python"}, "ann": {"from": "node"}}
        assert await py.presence.info() == members

        # The page goes away (its socket closes): ann is still in Node's tab.
        await browser.evaluate("tab1", "window.presenceCable.disconnect(), true")
        # The Node tab leaves explicitly: one leave, at once (no grace).
        await node.send({"cmd": "presence_leave", "key": "p"})
        assert await next_change(py) == PresenceChanged("leave", "ann")
        assert await py.presence.info() == {"py": {"from": "python"}}
        await node.expect({"event": "presence", "data": {"type": "leave", "id": "ann"}})
        # Only one leave was announced (a broadcast made after it is the
        # next thing the Python client sees).
        await fresh_server.broadcast("presence-probe:three", {"marker": 1})
        while True:
            event = await py.receive_event()
            assert not isinstance(event, PresenceChanged), event
            if isinstance(event, Message) and event.data == {"marker": 1}:
                break
