"""The ASGI app's routing and lifespan, driven as an ASGI server would."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.helpers import GC_THRESHOLD_CASES
from trio_cable import Cable, Channel
from trio_cable.asgi import CableApp

Message = dict[str, Any]


class Lifespan:
    """Drive an app's lifespan like a server does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app, self._receive = trio.open_memory_channel[Message](10)
        self._send, self.from_app = trio.open_memory_channel[Message](10)

    async def run(self) -> None:
        await self.app(
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            self._receive.receive,
            self._send.send,
        )

    async def step(self, kind: str) -> Message:
        await self.to_app.send({"type": f"lifespan.{kind}"})
        with trio.fail_after(5):
            return await self.from_app.receive()


def make_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

    return cable


async def test_lifespan_runs_the_cable_and_the_inner_apps_lifespan() -> None:
    events: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            kind = message["type"].split(".")[1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return

    cable = make_cable()
    driver = Lifespan(CableApp(cable, inner))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run)
        assert (await driver.step("startup"))["type"] == "lifespan.startup.complete"
        assert cable.is_running
        assert (await driver.step("shutdown"))["type"] == "lifespan.shutdown.complete"
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    assert not cable.is_running


@pytest.mark.parametrize("behaviour", ["returns", "raises"])
async def test_lifespan_with_an_inner_app_without_lifespan(behaviour: str) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and behaviour == "raises":
            raise ValueError("unsupported scope")

    cable = make_cable()
    driver = Lifespan(CableApp(cable, inner))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run)
        assert (await driver.step("startup"))["type"] == "lifespan.startup.complete"
        assert (await driver.step("shutdown"))["type"] == "lifespan.shutdown.complete"


async def test_failing_inner_startup_fails_the_lifespan() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    cable = make_cable()
    driver = Lifespan(CableApp(cable, inner))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run)
        reply = await driver.step("startup")
    assert reply["type"] == "lifespan.startup.failed"
    assert "no database" in reply["message"]
    assert not cable.is_running


async def collect(app: Any, scope: Message, incoming: list[Message]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_everything_but_the_cable_path_goes_to_the_inner_app() -> None:
    seen: list[tuple[str, str]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["type"], scope["path"]))

    app = CableApp(make_cable(), inner)
    await collect(app, {"type": "http", "path": "/cable"}, [])
    await collect(app, {"type": "websocket", "path": "/other"}, [])
    assert seen == [("http", "/cable"), ("websocket", "/other")]


async def test_without_an_inner_app_other_paths_are_refused() -> None:
    app = CableApp(make_cable())
    sent = await collect(app, {"type": "http", "path": "/"}, [])
    assert sent[0]["status"] == 404
    sent = await collect(
        app, {"type": "websocket", "path": "/x"}, [{"type": "websocket.connect"}]
    )
    assert sent == [{"type": "websocket.close", "code": 1000}]


async def test_websocket_before_startup_is_closed_with_an_error() -> None:
    app = CableApp(make_cable())
    scope = {
        "type": "websocket",
        "path": "/cable",
        "subprotocols": ["actioncable-v1-json"],
    }
    sent = await collect(app, scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1011}]


async def test_websocket_session_through_asgi_messages() -> None:
    cable = make_cable()
    app = CableApp(cable)
    scope = {
        "type": "websocket",
        "path": "/cable",
        "query_string": b"",
        "headers": [],
        "subprotocols": ["actioncable-v1-json", "actioncable-unsupported"],
    }
    ident = '{"channel":"Room"}'
    incoming = [
        {"type": "websocket.connect"},
        {
            "type": "websocket.receive",
            "text": '{"command":"subscribe","identifier":"{\\"channel\\":\\"Room\\"}"}',
        },
        {"type": "websocket.receive", "bytes": b"\x00"},
    ]
    async with cable.running():
        sent: list[Message] = []
        receive_send, receive_channel = trio.open_memory_channel[Message](10)
        for message in incoming:
            receive_send.send_nowait(message)

        async def send(message: Message) -> None:
            sent.append(message)
            if len(sent) == 4:  # accept, welcome, confirm, error
                receive_send.send_nowait({"type": "websocket.disconnect"})

        with trio.fail_after(5):
            await app(scope, receive_channel.receive, send)
    assert sent[0] == {"type": "websocket.accept", "subprotocol": "actioncable-v1-json"}
    assert sent[1]["text"] == '{"type":"welcome"}'
    texts = sorted(m["text"] for m in sent[2:4])
    assert '"invalid_request"' in texts[1]
    assert ident.replace('"', '\\"') in texts[0]
    assert "confirm_subscription" in texts[0]
    assert cable.hub.statistics().streams == 0


async def test_tune_gc_true_raises_the_threshold_and_freezes() -> None:
    import gc

    before = gc.get_threshold()
    try:
        app = CableApp(make_cable(), tune_gc=True)
        driver = Lifespan(app)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run)
            await driver.step("startup")
            assert gc.get_threshold()[0] == 50_000
            assert gc.get_freeze_count() > 0
            await driver.step("shutdown")
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


@pytest.mark.parametrize(
    ("tune_gc", "chosen", "serving"),
    GC_THRESHOLD_CASES,
)
async def test_the_default_raises_an_untouched_gc_threshold_while_serving(
    tune_gc: bool | None, chosen: tuple[int, int, int], serving: int
) -> None:
    import gc

    before = gc.get_threshold()
    gc.set_threshold(*chosen)
    try:
        driver = Lifespan(CableApp(make_cable(), tune_gc=tune_gc))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run)
            await driver.step("startup")
            assert gc.get_threshold() == (serving, *chosen[1:])
            assert gc.get_freeze_count() == 0  # nothing frozen by default
            await driver.step("shutdown")
        assert gc.get_threshold() == chosen  # put back at shutdown
    finally:
        gc.set_threshold(*before)
