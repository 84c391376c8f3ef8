"""1,000 members join one presence stream at once, over real sockets,
while the canary's feed runs: the observer gets every join, one info
frame lists all 1,000, and the canary loses nothing. Its latency is
printed with ``-s``; docs/benchmarks.md records the figures (the bound
here is only a generous stall bound)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import trio

from tests.helpers import raw_connect, served
from tests.helpers.canary import canary_feed, hostile_cable
from tests.helpers.waiting import LOSS_BOUND
from trio_cable import Channel
from trio_cable.testing import identifier_for

MEMBERS = 1000
CONNECTIONS = 4
LOBBY = identifier_for("Lobby")


async def test_a_join_storm_of_1000_members() -> None:
    cable = hostile_cable(commands_per_second=100_000, command_burst=100_000)

    @cable.channel
    class Lobby(Channel):
        async def subscribed(self) -> None:
            self.stream_from("lobby", presence=True)

    @cable.channel
    class Member(Channel):
        presence_events = False  # an audience: joins, gets no events

        async def subscribed(self) -> None:
            self.stream_from("lobby", presence=True)

    async with (
        AsyncExitStack() as stack,
        served(cable) as port,
    ):
        observer = await raw_connect(stack, port, welcome=True)
        await observer.subscribe(LOBBY)
        members = [
            await raw_connect(stack, port, welcome=True) for _ in range(CONNECTIONS)
        ]
        per = MEMBERS // CONNECTIONS
        for c, client in enumerate(members):
            for n in range(per):
                await client.subscribe(identifier_for("Member", n=c * per + n))
        async with canary_feed(cable, port) as report:
            for c, client in enumerate(members):
                frames = []
                for n in range(per):
                    ident = identifier_for("Member", n=c * per + n)
                    presence = {"id": f"m{c * per + n}", "info": {"n": c * per + n}}
                    frames.append(
                        json.dumps(
                            {
                                "command": "join",
                                "identifier": ident,
                                "presence": presence,
                            }
                        )
                    )
                for frame in frames:
                    await client.send_text(frame)
            joined: set[str] = set()
            with trio.fail_after(LOSS_BOUND):
                while len(joined) < MEMBERS:
                    frame = await observer.receive()
                    assert frame is not None
                    event = frame["message"]["presence"]
                    assert event["type"] == "join"
                    joined.add(event["id"])
        print(f"\ncanary during the join storm (loaded machine): {report.summary()}")
        # Nothing lost (canary_feed checked), and a generous stall bound.
        assert report.quantile(0.99) < 5.0
        await observer.send_text(
            json.dumps({"command": "presence", "identifier": LOBBY})
        )
        with trio.fail_after(LOSS_BOUND):
            info = await observer.receive()
        assert info is not None
        listed = info["message"]["presence"]
        assert listed["type"] == "info"
        assert listed["total"] == MEMBERS
        assert {r["id"] for r in listed["records"]} == joined
        assert await cable.presence("lobby") == {
            f"m{n}": {"n": n} for n in range(MEMBERS)
        }
