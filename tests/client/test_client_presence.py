"""The Python client's presence API (``subscription.presence``) against a
served cable, beside AnyCable's own client in Node: one member in two
Python "tabs", an ``@anycable/web`` member, the list, the callbacks, one
leave when the last tab leaves."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import pytest

from tests.helpers import served
from tests.interop.nodeclient import ANYCABLE_DRIVER, open_ac_client, skip_unless_node
from trio_cable import Cable, Channel
from trio_cable.client import ClientError, PresenceChanged, open_cable_client


def room_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}", presence=True)

    @cable.channel
    class NoPresence(Channel):
        async def subscribed(self) -> None:
            self.stream_from("np")

    return cable


async def next_change(sub: Any) -> PresenceChanged:
    while True:
        event = await sub.receive_event()
        if isinstance(event, PresenceChanged):
            return event


async def test_python_tabs_and_an_anycable_client_share_presence() -> None:
    skip_unless_node()
    cable = room_cable()
    async with AsyncExitStack() as stack:
        port = await stack.enter_async_context(served(cable))
        url = f"ws://127.0.0.1:{port}/cable"
        tabs = []
        for _ in range(2):
            client = await stack.enter_async_context(open_cable_client(url))
            tabs.append(
                await stack.enter_async_context(
                    client.subscribe("RoomChannel", room="r1")
                )
            )
        tab1, tab2 = tabs
        joins: list[tuple[str, Any]] = []
        leaves: list[str] = []
        tab1.presence.on_join(lambda id, info: joins.append((id, info)))
        tab1.presence.on_leave(lambda id, _: leaves.append(id))
        assert await tab1.presence.info() == {}
        node = await stack.enter_async_context(open_ac_client(driver=ANYCABLE_DRIVER))
        await node.send({"cmd": "connect", "url": url})
        await node.send(
            {
                "cmd": "subscribe",
                "key": "r",
                "channel": "RoomChannel",
                "params": {"room": "r1"},
            }
        )
        await node.expect({"event": "subscribed", "key": "r"})
        await node.send({"cmd": "presence_join", "key": "r", "id": "node", "info": 1})
        assert await next_change(tab1) == PresenceChanged("join", "node", 1)
        await tab1.presence.join("py", {"tab": 1})
        assert await next_change(tab1) == PresenceChanged("join", "py", {"tab": 1})
        await tab2.presence.join("py", {"tab": 2})
        # Its own list comes after its join (in order on one subscription).
        assert await tab2.presence.info() == {"node": 1, "py": {"tab": 2}}
        await node.send({"cmd": "presence_info", "key": "r"})
        state = await node.expect({"event": "presence_state", "key": "r"})
        assert state["state"] == {"node": 1, "py": {"tab": 2}}
        # Kept up to date from the events since the first info().
        assert await tab1.presence.info() == {"node": 1, "py": {"tab": 1}}
        await tab1.presence.leave()
        await tab2.presence.leave()
        seen = [await next_change(tab2) for _ in range(3)]
        assert seen == [
            PresenceChanged("join", "node", 1),
            PresenceChanged("join", "py", {"tab": 1}),
            PresenceChanged("leave", "py"),
        ]
        await node.expect({"event": "presence", "data": {"type": "leave", "id": "py"}})
        assert joins == [("node", 1), ("py", {"tab": 1})]
        assert leaves == ["py"]
        # The data stream is untouched by presence frames.
        await cable.broadcast("room:r1", {"plain": "data"})
        assert await tab1.receive() == {"plain": "data"}


async def test_info_without_a_presence_stream_is_a_clear_error() -> None:
    cable = room_cable()
    async with (
        served(cable) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
        client.subscribe("NoPresence") as sub,
    ):
        with pytest.raises(ClientError):
            await sub.presence.info()
        await cable.broadcast("np", 1)
        assert await sub.receive() == 1
