"""cable.js's extended protocol in headless Chromium, against real servers.

A page loaded through a TCP proxy (so its cable, ``/cable`` on the page's
host, goes through the proxy too and is same-origin) imports ``/cable.js``
from the server and subscribes; the test cuts the proxy. Shown: 300
numbered broadcasts over HTTP, each received once, in order, across the
cut, with the session resumed (``subscribed()`` ran once); history gone
surfaced as ``historyLost()``; ``<turbo-stream-channel>`` recovering the
same way; whispers; pongs; and the fallback to ``actioncable-v1-json`` against a
server without the extended protocol.

The recovery test takes its server side as a parameter (``side``): the
cut above; two Hypercorn processes on one redis-server, the page's worker
killed and started again midway; the same, its reconnect landing on the
other worker (tests/helpers/workers.py).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.browser.browser_driver import Browser, skip_unless_browser
from tests.helpers import (
    LOSS_BOUND,
    ServerSide,
    all_once_across_a_drop,
    served_on,
    tcp_proxy,
)
from tests.helpers.workers import Drop, side_fixture
from tests.helpers.wsclient import silent_client_dropped
from tests.interop.servers import ServerKind
from trio_cable import Cable, Channel, HistoryPolicy, turbo
from trio_cable.client import make_identifier

pytestmark = pytest.mark.node

#: The server sides the recovery test runs against: (process kind, drop);
#: see tests/helpers/workers.py. Hypercorn: the page and its cable share
#: the port.
SIDES: list[tuple[ServerKind, Drop]] = [
    ("hypercorn", "cut"),
    ("hypercorn", "restart"),
    ("hypercorn", "other-worker"),
]


side = side_fixture(SIDES, check=skip_unless_browser)


#: Subscribes FeedChannel (room ROOM) with a cable of its own; what it gets
#: goes to window.numbers, every other callback to window.changes.
SUBSCRIBE = """(async () => {
  const { createCable } = await import("/cable.js")
  const cable = createCable("/cable", {
    reconnectBaseDelay: 300,
    reconnectMaxDelay: 1000,
  })
  window.pageCable = cable
  window.numbers = []
  window.changes = []
  const note = (name) => (detail) =>
    window.changes.push(detail ? [name, detail] : [name])
  window.feed = cable.subscribe("FeedChannel", { room: ROOM }, {
    connected: note("connected"),
    disconnected: (detail) => window.changes.push(["disconnected"]),
    received: (data) => window.numbers.push(data.n),
    recovered: note("recovered"),
    historyLost: note("historyLost"),
  })
})()"""


async def subscribe_page(browser: Browser, origin: str, room: str) -> None:
    """A page of ``origin`` (the cable's host) subscribed to ``room``."""
    await browser.open("page", f"{origin}/cable.js")  # any page of that origin
    await browser.evaluate("page", SUBSCRIBE.replace("ROOM", json.dumps(room)))
    await browser.wait_for("page", "window.changes.length > 0", timeout=LOSS_BOUND)
    changes = await browser.evaluate("page", "window.changes")
    assert changes == [["connected", {"reconnected": False}]]
    assert await browser.evaluate("page", "window.pageCable.extended") is True


async def test_300_broadcasts_exactly_once_in_order_across_a_drop(
    side: ServerSide, browser: Browser
) -> None:
    room = uuid.uuid4().hex[:8]
    await subscribe_page(browser, side.http_url, room)

    async def received(count: int) -> list[int]:
        await browser.wait_for(
            "page", f"window.numbers.length >= {count}", timeout=LOSS_BOUND
        )
        numbers: list[int] = await browser.evaluate("page", "window.numbers")
        return numbers

    numbers = await all_once_across_a_drop(
        side.broadcast, f"feed:{room}", received, side.disruption
    )
    # The replay's end may come after the last number (the page back after
    # the last broadcast).
    recovered = "window.changes.some(([name]) => name === 'recovered')"
    await browser.wait_for("page", recovered, timeout=LOSS_BOUND)
    assert await browser.evaluate("page", "window.numbers") == numbers
    changes = await browser.evaluate("page", "window.changes")
    back = (
        {"reconnected": True, "restored": True}
        if side.keeps_session
        else {"reconnected": True}
    )
    assert changes == [
        ["connected", {"reconnected": False}],
        ["disconnected"],
        # Resumed (confirmed with no subscribe), or subscribed again after
        # a worker was killed; then the replay was complete.
        ["connected", back],
        ["recovered"],
    ]
    stats = await side.stats()
    identifier = make_identifier("FeedChannel", {"room": room})
    subscribes = 1 if side.keeps_session else 2
    assert stats["events"][f"subscribed {identifier}"] == subscribes
    assert not [line for line in browser.console if unexpected_error(line)]


def unexpected_error(line: str) -> bool:
    """A console line that reports an error, other than Chromium's own
    report of a reconnect that found no server (a worker restarting)."""
    refused = "WebSocket connection to" in line and "failed" in line
    return "error" in line.lower() and not refused


def feed_cable(limit: int = 3, **options: Any) -> Cable:
    cable = Cable(history={"feed:*": HistoryPolicy(limit=limit)}, **options)

    @cable.channel
    class FeedChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"feed:{self.params['room']}")

    return cable


async def test_history_gone_calls_history_lost(browser: Browser) -> None:
    """More broadcasts than the stream keeps while the page is away:
    ``historyLost()``, then live broadcasts again."""
    cable = feed_cable()
    async with served_on(cable, "hypercorn") as port, tcp_proxy(port) as proxy:
        await subscribe_page(browser, f"http://127.0.0.1:{proxy.port}", "r")
        await cable.broadcast("feed:r", {"n": 0})
        await browser.wait_for("page", "window.numbers.length === 1")
        proxy.refuse()  # down until admitted: the page cannot be back
        await browser.wait_for("page", "window.changes.length === 2")  # disconnected
        for n in range(1, 6):  # 5 missed, 3 kept: the first missed is gone
            await cable.broadcast("feed:r", {"n": n})
        proxy.admit()
        await browser.wait_for(
            "page", "window.changes.length === 4", timeout=LOSS_BOUND
        )
        changes = await browser.evaluate("page", "window.changes")
        assert changes[2:] == [
            ["connected", {"reconnected": True, "restored": True}],
            ["historyLost"],
        ]
        await cable.broadcast("feed:r", {"n": 6})
        await browser.wait_for("page", "window.numbers.length === 2")
        assert await browser.evaluate("page", "window.numbers") == [0, 6]


async def test_turbo_stream_channel_recovers_what_it_missed(browser: Browser) -> None:
    """``<turbo-stream-channel>`` rides on cable.js: Turbo Streams broadcast
    while its connection was down are applied once, in order, after it."""
    cable = feed_cable(limit=100)
    async with served_on(cable, "hypercorn") as port, tcp_proxy(port) as proxy:
        await browser.open("page", f"http://127.0.0.1:{proxy.port}/cable.js")
        element = (
            "import('/cable.js').then(() => {"
            " const list = document.createElement('ul'); list.id = 'items';"
            " const channel = document.createElement('turbo-stream-channel');"
            " channel.setAttribute('channel', 'FeedChannel');"
            """ channel.setAttribute('params', '{"room": "t"}');"""
            " document.body.append(list, channel) })"
        )
        await browser.evaluate("page", element)
        listen = (
            "(window.recoveries = 0), document.querySelector('turbo-stream-channel')"
            ".addEventListener('turbo-stream-channel:recovered',"
            " () => window.recoveries++)"
        )
        await browser.evaluate("page", listen)
        connected = "document.querySelector('turbo-stream-channel[connected]')"
        await browser.wait_for("page", connected, timeout=LOSS_BOUND)
        items = "[...document.querySelectorAll('#items li')].map((li) => li.id)"
        await cable.broadcast("feed:t", turbo.append("items", "<li id='i0'></li>"))
        await browser.wait_for("page", f"{items}.length === 1")
        proxy.refuse()
        await browser.wait_for("page", f"!{connected}")
        for n in range(1, 4):
            await cable.broadcast(
                "feed:t", turbo.append("items", f"<li id='i{n}'></li>")
            )
        proxy.admit()
        await browser.wait_for("page", connected, timeout=LOSS_BOUND)
        # Resumed: live broadcasts wait for the replay, so this one comes
        # after it, and a duplicate from the replay would come before it.
        await cable.broadcast("feed:t", turbo.append("items", "<li id='i4'></li>"))
        await browser.wait_for("page", f"{items}.includes('i4')", timeout=LOSS_BOUND)
        assert await browser.evaluate("page", items) == [f"i{n}" for n in range(5)]
        assert await browser.evaluate("page", "window.recoveries") == 1


async def test_falls_back_to_actioncable_v1_json(browser: Browser) -> None:
    """A server without the extended protocol selects actioncable-v1-json
    from cable.js's offer: no session id, whispers not sent, broadcasts
    received."""
    cable = feed_cable(extended_protocol=False)
    async with served_on(cable, "hypercorn") as port:
        origin = f"http://127.0.0.1:{port}"
        await browser.open("page", f"{origin}/cable.js")
        await browser.evaluate("page", SUBSCRIBE.replace("ROOM", '"r"'))
        await browser.wait_for("page", "window.changes.length > 0", timeout=LOSS_BOUND)
        [conn] = cable.connections
        assert conn.protocol.dialect.subprotocol == "actioncable-v1-json"
        state = "[window.pageCable.extended, window.pageCable.sessionId]"
        assert await browser.evaluate("page", state) == [False, None]
        assert await browser.evaluate("page", "window.feed.whisper({a: 1})") is False
        await cable.broadcast("feed:r", {"n": 1})
        await browser.wait_for("page", "window.numbers.length === 1")


WHISPERS = """(async () => {
  const { createCable } = await import("/cable.js")
  const heard = { ann: [], bob: [] }
  const subscribed = (name) =>
    new Promise((resolve) => {
      const sub = createCable("/cable").subscribe("TypingChannel", {
        connected: () => resolve(sub),
        received: (data) => heard[name].push(data),
      })
    })
  const [ann, bob] = [await subscribed("ann"), await subscribed("bob")]
  window.heard = heard
  return ann.whisper({ typing: "ann" })
})()"""


async def test_whispers_reach_the_others_not_the_sender(browser: Browser) -> None:
    """Two cables in one page: ``subscription.whisper()`` reaches the other
    one and not its own (once a broadcast made after it reached both)."""
    cable = Cable()

    @cable.channel
    class TypingChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("typing", whisper=True)

    async with served_on(cable, "hypercorn") as port:
        await browser.open("page", f"http://127.0.0.1:{port}/cable.js")
        assert await browser.evaluate("page", WHISPERS) is True
        await browser.wait_for("page", "window.heard.bob.length === 1")
        await cable.broadcast("typing", {"marker": 1})
        both = "window.heard.ann.length + window.heard.bob.length === 3"
        await browser.wait_for("page", both, timeout=LOSS_BOUND)
        assert await browser.evaluate("page", "window.heard") == {
            "ann": [{"marker": 1}],
            "bob": [{"typing": "ann"}, {"marker": 1}],
        }


async def test_pongs_keep_the_page_connected(browser: Browser) -> None:
    """Under ``pong_timeout`` cable.js stays connected (it answers every
    ping) while a raw client that says nothing is dropped (``no_pong``)."""
    cable = feed_cable(ping_interval=0.1, pong_timeout=1.0)
    async with served_on(cable, "hypercorn") as port:
        await subscribe_page(browser, f"http://127.0.0.1:{port}", "p")
        await silent_client_dropped(port)
        assert cable.counters["no_pong"] == 1
        assert await browser.evaluate("page", "window.changes.length") == 1
        assert await browser.evaluate("page", "window.pageCable.state") == "open"
