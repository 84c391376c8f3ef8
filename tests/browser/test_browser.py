"""End to end in headless Chromium against a real Hypercorn process.

The server is ``tests/browser/browser_app.py``: the demo chat unchanged plus
test pages. Pages load the client the way users do, ``/cable.js`` from the
server (``trio_cable/static/cable.js``). A screenshot of the demo is saved to
``tests/browser/artifacts/demo.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import trio

from tests.browser.browser_driver import (
    ARTIFACTS,
    Browser,
    BrowserServer,
    skip_unless_browser,
)
from trio_cable import turbo

pytestmark = pytest.mark.node

CONNECTED = "document.querySelector('{}')?.hasAttribute('connected')"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    skip_unless_browser()
    with BrowserServer(tmp_path_factory.mktemp("browser-server")) as running:
        yield running


def text_of(selector: str) -> str:
    return f"(document.querySelector({selector!r})?.textContent ?? '')"


async def test_two_pages_in_one_demo_room_see_each_others_messages(
    server: BrowserServer, browser: Browser
) -> None:
    channel = CONNECTED.format("turbo-stream-channel")
    await browser.open("ana", server.http_url("/rooms/trio?name=ana"))
    await browser.wait_for("ana", channel)
    await browser.open("bo", server.http_url("/rooms/trio?name=bo"))
    await browser.wait_for("bo", channel)
    await browser.wait_for("ana", f"{text_of('#members')} === 'ana, bo'")

    # Over the cable: ana types, bo's page gets the <li> as a Turbo Stream.
    await browser.call("fill", page="ana", selector="#composer input", text="hi bo")
    await browser.call("press", page="ana", selector="#composer input", key="Enter")
    last = "document.querySelector('#messages li:last-child')?.textContent ?? ''"
    await browser.wait_for("bo", f"{last}.includes('ana hi bo')")
    await browser.wait_for("ana", f"{last}.includes('ana hi bo')")

    # Over an HTTP form: bo posts, ana's page gets the <li> live.
    await browser.call("fill", page="bo", selector="#http-form input", text="hello")
    await browser.call("click", page="bo", selector="#http-form button")
    await browser.wait_for("ana", f"{last}.includes('bo hello form')")
    # bo's page reloaded after the POST and shows the room's history.
    await browser.wait_for("bo", f"{last}.includes('bo hello form')")
    await browser.wait_for("bo", channel)
    await browser.wait_for("ana", f"{text_of('#members')} === 'ana, bo'")
    assert await browser.evaluate("ana", text_of("#status")) == ""  # CSS text
    status = "getComputedStyle(document.querySelector('#status'), '::after').content"
    assert await browser.evaluate("ana", status) == '"live"'

    ARTIFACTS.mkdir(exist_ok=True)
    await browser.call("screenshot", page="ana", path=str(ARTIFACTS / "demo.png"))
    assert not [line for line in browser.console if "error" in line.lower()]


async def test_turbo_stream_channel_element_with_turbo(
    server: BrowserServer, browser: Browser
) -> None:
    await browser.open("page", server.http_url("/test/element?room=e1"))
    await browser.wait_for("page", CONNECTED.format("turbo-stream-channel"))
    element = "document.querySelector('turbo-stream-channel')"
    source = f"Turbo.session.streamObserver.sources.has({element})"
    assert await browser.evaluate("page", source) is True, "a Turbo stream source"

    # A broadcast from an HTTP request; the page has no script of its own.
    stream = turbo.append("items", "<li id='i1'>one</li>")
    assert await server.post("/test/stream?stream=probe:e1", stream) == (200, "1")
    await browser.wait_for("page", f"{text_of('#items li')} === 'one'")

    # Changing params moves the subscription.
    await browser.evaluate(
        "page", f"""{element}.setAttribute("params", '{{"room":"e2"}}')"""
    )
    await server.wait_for_event_count("subscribed e2", 1)
    await server.wait_for_event_count("unsubscribed e1", 1)
    await browser.wait_for("page", CONNECTED.format("turbo-stream-channel"))

    await browser.evaluate("page", f"{element}.remove()")
    await server.wait_for_event_count("unsubscribed e2", 1)
    assert await server.post("/test/stream?stream=probe:e2", stream) == (200, "0")

    # The imperative form: streamFrom() through the same cable.
    call = "m.streamFrom('ProbeChannel', {room: 's1'})"
    subscribe = f"import('/cable.js').then((m) => {{ {call} }})"
    await browser.evaluate("page", subscribe)
    await server.wait_for_event_count("subscribed s1", 1)
    two = turbo.append("items", "<li>two</li>")
    assert await server.post("/test/stream?stream=probe:s1", two) == (200, "1")
    await browser.wait_for("page", f"{text_of('#items li:last-child')} === 'two'")


async def test_turbo_rails_stream_source_with_a_signed_name(
    server: BrowserServer, browser: Browser
) -> None:
    await browser.open("page", server.http_url("/test/turbo-rails"))
    await browser.wait_for("page", CONNECTED.format("#good"))
    html = turbo.append("board", "<li>signed</li>")
    assert await server.broadcast("board:1", html) == 1
    await browser.wait_for("page", f"{text_of('#board li')} === 'signed'")
    # The tampered name was rejected: nobody listens to board:2.
    assert await server.broadcast("board:2", html) == 0
    assert await browser.evaluate("page", CONNECTED.format("#bad")) is False


async def test_the_page_recovers_after_the_server_restarts(
    fresh_server: BrowserServer, browser: Browser
) -> None:
    connected = CONNECTED.format("turbo-stream-channel")
    await browser.open("page", fresh_server.http_url("/test/element?room=r1"))
    await browser.wait_for("page", connected)

    fresh_server.kill()
    await browser.wait_for("page", f"!{connected}")
    # Restarting takes about a second, so the page's first retry (after
    # about 1 s) usually meets a dead port and backs off; either way it must
    # come back by itself.
    fresh_server.start()
    await fresh_server.wait_ready()
    await browser.wait_for("page", connected, timeout=15)

    stream = turbo.append("items", "<li>after the restart</li>")
    assert await fresh_server.post("/test/stream?stream=probe:r1", stream) == (200, "1")
    await browser.wait_for("page", f"{text_of('#items li')} === 'after the restart'")


@pytest.mark.slow
async def test_demo_page_hint_times_icon_and_retry_countdown(
    fresh_server: BrowserServer, browser: Browser
) -> None:
    """The demo (issue 16): a favicon, a hint in an empty room, message
    times, and a "connecting" state that says when it retries; the retry
    wait is capped at 5 s, so a page is back soon after its server is."""
    connected = CONNECTED.format("turbo-stream-channel")
    await browser.open("page", fresh_server.http_url("/rooms/random?name=ana"))
    await browser.wait_for("page", connected)
    before = "getComputedStyle(document.querySelector('#messages'), '::before')"
    assert "No messages yet" in await browser.evaluate("page", f"{before}.content")
    icon = "fetch(document.querySelector('link[rel=icon]').href).then(r => r.status)"
    assert await browser.evaluate("page", icon) == 200

    await browser.call("fill", page="page", selector="#composer input", text="hi")
    await browser.call("press", page="page", selector="#composer input", key="Enter")
    await browser.wait_for("page", "document.querySelector('#messages li time')")
    stamp = await browser.evaluate("page", text_of("#messages li time"))
    assert re.fullmatch(r"\d{1,2}:\d{2}( [AP]M)?", stamp), stamp
    assert await browser.evaluate("page", f"{before}.content") == "none"

    note = "getComputedStyle(document.querySelector('#status'), '::after').content"
    expose = "import('/cable.js').then((m) => { window.pageCable = m.cable })"
    await browser.evaluate("page", expose)
    fresh_server.kill()
    # Past the first three retries (1, 2, 4 s): the wait is at its cap.
    await browser.wait_for("page", "window.pageCable.attempts >= 4", timeout=30)
    shown = await browser.evaluate("page", note)
    found = re.fullmatch(r'"offline: retrying in (\d+) s…"', shown)
    assert found is not None, shown
    assert int(found.group(1)) <= 6  # 5 s, plus up to 20 % jitter
    fresh_server.start()
    await fresh_server.wait_ready()
    back = trio.current_time()
    await browser.wait_for("page", connected, timeout=15)
    print(f"\npage back {trio.current_time() - back:.1f} s after the server")
    await browser.wait_for("page", f"{note} === '\"live\"'")


CALLS = """(async () => {
  const { createCable } = await import("/cable.js")
  const cable = createCable()
  const received = []
  const probe = cable.subscribe("ProbeChannel", { room: "calls" }, {
    received(data) { received.push(data) },
  })
  const sum = await probe.call("add", { a: 2, b: 3 })
  const seenBeforeTheReply = received.length
  let refused = null
  try { await probe.call("refuse") }
  catch (error) { refused = [error.name, error.reason] }
  let unknown = null
  try { await probe.call("nope") } catch (error) { unknown = error.reason }
  let timedOut = null
  try { await probe.call("stall", {}, { timeout: 300 }) }
  catch (error) { timedOut = error.reason }
  cable.disconnect()
  return { sum, seenBeforeTheReply, received, refused, unknown, timedOut }
})()"""


async def test_cable_js_call_resolves_with_the_actions_result(
    server: BrowserServer, browser: Browser
) -> None:
    await browser.open("page", server.http_url("/test/element?room=c1"))
    result = await browser.evaluate("page", CALLS)
    assert result["sum"] == 5
    # the action's transmit reached received() before the call resolved
    assert result["seenBeforeTheReply"] == 1
    assert result["refused"] == ["CallError", "invalid"]
    assert result["unknown"] == "unknown_action"
    assert result["timedOut"] == "timeout"  # stall never returns
    assert result["received"][0] == {"adding": [2, 3]}
    assert not [line for line in browser.console if "error" in line.lower()]
