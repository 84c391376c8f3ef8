"""AnyCable's own client, ``@anycable/web`` 1.1 (on ``@anycable/core``),
in headless Chromium against real servers: 300 numbered broadcasts over
HTTP, the client's connection dropped midway, each received once, in
order, on the extended protocol (``actioncable-v1-ext-json``).

The page is a page of the server's origin seen through the test's proxy;
the npm packages come from ``js/node_modules`` as they are (ES modules,
resolved by an import map the test adds to the page), answered inside the
browser by the driver (``serveFiles``), so nothing is bundled and nothing
reaches a network.
The drops are the recovery tests' server sides (tests/helpers/workers.py):
the proxy cut; the page's worker killed and started again, with history
in Redis; its reconnect landing on the other worker.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.browser.browser_driver import Browser, skip_unless_browser
from tests.helpers import LOSS_BOUND, ServerSide, all_once_across_a_drop
from tests.helpers.workers import Drop, side_fixture
from tests.interop.nodeclient import JS_DIR
from tests.interop.servers import ServerKind

pytestmark = pytest.mark.node

#: (process kind, drop); Hypercorn: the page's origin is the cable's.
SIDES: list[tuple[ServerKind, Drop]] = [
    ("hypercorn", "cut"),
    ("hypercorn", "restart"),
    ("hypercorn", "other-worker"),
]

#: Where the page finds the npm packages (answered by the driver).
VENDOR = "/vendor/"
IMPORT_MAP = json.dumps(
    {
        "imports": {
            name: f"{VENDOR}{name}/index.js"
            for name in ("@anycable/web", "@anycable/core", "nanoevents")
        }
    }
)

#: Adds the import map to the page, then subscribes FeedChannel (room
#: ROOM) with @anycable/web on the extended protocol, reconnecting 300 ms
#: after a drop; what it gets goes to window.numbers, the channel's other
#: events to window.changes.
SUBSCRIBE = """(async () => {
  const map = document.createElement("script")
  map.type = "importmap"
  map.textContent = IMPORT_MAP
  document.head.append(map)
  const { createCable } = await import("@anycable/web")
  // No URL: its default, /cable on the page's host. (A relative URL given
  // explicitly is kept as it is, and @anycable/core 1.1.7 then fails on
  // the first welcome with a sid: new URL("/cable") in setParam.)
  const cable = createCable({
    protocol: "actioncable-v1-ext-json",
    reconnectStrategy: () => 300,
    logLevel: "error",
  })
  window.numbers = []
  window.changes = []
  const channel = cable.subscribeTo("FeedChannel", { room: ROOM })
  channel.on("connect", ({ reconnect, restored }) =>
    window.changes.push(["connect", { reconnect, restored }]))
  channel.on("disconnect", () => window.changes.push(["disconnect"]))
  channel.on("info", (ev) => window.changes.push(["info", ev.type]))
  channel.on("message", (data) => window.numbers.push(data.n))
  await channel.ensureSubscribed()
  return cable.protocol.constructor.name
})()"""


side = side_fixture(SIDES, check=skip_unless_browser)


async def anycable_page(browser: Browser, origin: str, room: str) -> None:
    """A page of ``origin`` (the cable's host: a page the browser sees come
    from the network, or Chromium refuses it loopback sockets) with
    ``@anycable/web``, subscribed to ``room``."""
    vendor = f"{origin}{VENDOR}"
    await browser.call("serveFiles", url=vendor, dir=str(JS_DIR / "node_modules"))
    await browser.open("page", f"{origin}/cable.js")  # any page of that origin
    subscribe = SUBSCRIBE.replace("IMPORT_MAP", json.dumps(IMPORT_MAP))
    subscribe = subscribe.replace("ROOM", json.dumps(room))
    protocol = await browser.evaluate("page", subscribe)
    assert protocol == "ActionCableExtendedProtocol"


async def test_300_broadcasts_exactly_once_in_order_across_a_drop(
    side: ServerSide, browser: Browser
) -> None:
    """Subscribed on the extended protocol; 300 numbered broadcasts at
    about 100/s; the connection dropped midway. ``@anycable/web`` comes
    back, asks for what it missed from its last epoch/offset (its session
    restored, or subscribing again after its worker was killed), and gets
    each broadcast once, in order."""
    room = uuid.uuid4().hex[:8]
    await anycable_page(browser, side.http_url, room)

    async def received(count: int) -> list[int]:
        await browser.wait_for(
            "page", f"window.numbers.length >= {count}", timeout=LOSS_BOUND
        )
        numbers: list[int] = await browser.evaluate("page", "window.numbers")
        return numbers

    numbers = await all_once_across_a_drop(
        side.broadcast, f"feed:{room}", received, side.disruption
    )
    back = {"reconnect": True, "restored": side.keeps_session}
    expected = [
        ["connect", {"reconnect": False, "restored": False}],
        ["info", "history_received"],  # subscribed with history (from now)
        # A restored channel stays connected; one subscribing again (its
        # worker killed: no session) is disconnected meanwhile.
        *([] if side.keeps_session else [["disconnect"]]),
        ["connect", back],
        ["info", "history_received"],  # what it missed, complete
    ]
    # The replay's end may come after the last number (the page back after
    # the last broadcast).
    enough = f"window.changes.length >= {len(expected)}"
    await browser.wait_for("page", enough, timeout=LOSS_BOUND)
    assert await browser.evaluate("page", "window.numbers") == numbers
    assert await browser.evaluate("page", "window.changes") == expected
    assert not [line for line in browser.console if "pageerror" in line]
