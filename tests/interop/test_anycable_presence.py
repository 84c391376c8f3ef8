"""AnyCable's own client, ``@anycable/web`` in Node, using its presence
API unchanged against trio_cable: ``channel.presence.join/leave/info`` and
the ``presence`` events. Two clients are one member in two tabs; closing
one tab announces nothing, leaving with the last one announces one leave,
at once; a dropped connection leaves after the grace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio

from tests.helpers import served
from tests.interop.nodeclient import (
    ANYCABLE_DRIVER,
    NodeClient,
    open_ac_client,
)
from trio_cable import Cable, Channel, PresenceEvent

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]


def room_cable(**options: float) -> Cable:
    cable = Cable(**options)

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"room:{self.params['room']}", presence=True)

    return cable


@asynccontextmanager
async def connected(
    stack: AsyncExitStack, port: int, n: int
) -> AsyncIterator[list[NodeClient]]:
    clients = []
    for _ in range(n):
        client = await stack.enter_async_context(open_ac_client(driver=ANYCABLE_DRIVER))
        await client.send({"cmd": "connect", "url": f"ws://127.0.0.1:{port}/cable"})
        await client.send(
            {
                "cmd": "subscribe",
                "key": "r",
                "channel": "RoomChannel",
                "params": {"room": "r1"},
            }
        )
        await client.expect({"event": "subscribed", "key": "r"})
        clients.append(client)
    yield clients


async def test_anycable_presence_api_with_two_tabs_of_one_member() -> None:
    cable = room_cable()
    events: list[PresenceEvent] = []
    cable.on_presence(events.append)
    async with (
        AsyncExitStack() as stack,
        served(cable) as port,
        connected(stack, port, 3) as (tab1, tab2, bob),
    ):
        await bob.send({"cmd": "presence_info", "key": "r"})
        state = await bob.expect({"event": "presence_state", "key": "r"})
        assert state["state"] == {}
        await tab1.send(
            {"cmd": "presence_join", "key": "r", "id": "ann", "info": {"tab": 1}}
        )
        join = {"type": "join", "id": "ann", "info": {"tab": 1}}
        await bob.expect({"event": "presence", "data": join})
        await tab2.send(
            {"cmd": "presence_join", "key": "r", "id": "ann", "info": {"tab": 2}}
        )
        # Its own list comes after its join (one subscription's commands
        # run in order): the join is in before anyone else asks.
        await tab2.send({"cmd": "presence_info", "key": "r"})
        state = await tab2.expect({"event": "presence_state", "key": "r"})
        assert state["state"] == {"ann": {"tab": 2}}
        await bob.send({"cmd": "presence_join", "key": "r", "id": 42, "info": "b"})
        await tab1.expect(
            {"event": "presence", "data": {"type": "join", "id": "42", "info": "b"}}
        )
        await tab1.send({"cmd": "presence_info", "key": "r"})
        state = await tab1.expect({"event": "presence_state", "key": "r"})
        assert state["state"] == {"ann": {"tab": 2}, "42": "b"}
        # One tab goes: no event. The last one leaves: one leave, at once.
        await tab1.send({"cmd": "presence_leave", "key": "r"})
        await tab2.send({"cmd": "presence_leave", "key": "r"})
        await bob.expect({"event": "presence", "data": {"type": "leave", "id": "ann"}})
        # Nothing else about ann (a broadcast after it has come through).
        await cable.broadcast("room:r1", {"marker": 1})
        await bob.expect({"event": "message", "data": {"marker": 1}})
        leaves = [e for e in bob.pending if e.get("data", {}).get("type") == "leave"]
        assert leaves == []
        assert [(e.type, e.id) for e in events] == [
            ("join", "ann"),
            ("join", "42"),
            ("leave", "ann"),
        ]
        # The info() state follows the events.
        await bob.send({"cmd": "presence_info", "key": "r"})
        state = await bob.expect({"event": "presence_state", "key": "r"})
        assert state["state"] == {"42": "b"}


async def test_a_dropped_anycable_client_leaves_after_the_grace() -> None:
    grace = 1.0
    cable = room_cable(presence_grace=grace, session_ttl=0)
    async with (
        AsyncExitStack() as stack,
        served(cable) as port,
        connected(stack, port, 2) as (gone, bob),
    ):
        await gone.send({"cmd": "presence_join", "key": "r", "id": "g", "info": None})
        await bob.expect(
            {"event": "presence", "data": {"type": "join", "id": "g", "info": None}}
        )
        before = trio.current_time()  # the drop comes after this
        await gone.send({"cmd": "exit"})
        await gone.wait_exited()
        await bob.expect({"event": "presence", "data": {"type": "leave", "id": "g"}})
        # Not before the grace (late is allowed on a loaded machine).
        assert trio.current_time() - before >= grace
