"""The reference Channels guide's dialect through the in-memory transport:
code written against that guide (its channel, its test client's shape)
runs unchanged, beside Action Cable clients on the same streams."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, all_tasks
from trio_cable import Cable, Channel, ConnectionRejected, Request, Unauthorized
from trio_cable.testing import cable_test_client, guide_test_client


def make_cable() -> Cable:
    cable = Cable()

    @cable.connect
    async def authenticate(request: Request) -> str | None:
        if request.query.get("user") == "intruder":
            raise Unauthorized()
        return request.query.get("user")

    # The guide's own channel, as its section 4 and 6 write it.
    @cable.channel
    class ChatChannel(Channel):
        def subscribed(self) -> None:
            self.stream_from(f"chat_{self.params['room']}")
            self.send({"status": "joined"})

        def speak(self, data: dict[str, Any]) -> None:
            self.broadcast(
                f"chat_{self.params['room']}",
                {"message": data["message"], "sender": self.current_user},
            )

        def receive(self, data: dict[str, Any]) -> None:
            self.send({"echo": data})

    @cable.channel
    class InboxChannel(Channel):
        def subscribed(self) -> None:
            if not self.authenticated:
                self.reject()
                return
            self.stream_from(f"inbox_{self.current_user}")

    return cable


async def test_the_guides_test_client_shape() -> None:
    cable = make_cable()
    with trio.fail_after(LOSS_BOUND):
        async with guide_test_client(cable, query={"user": "ana"}) as ws:
            confirm = await ws.subscribe("ChatChannel", room="general")
            assert confirm["type"] == "confirm_subscription"
            assert confirm["params"] == {"room": "general"}
            # what subscribed() sent came first, kept for receive()
            joined = await ws.receive()
            assert joined == {
                "type": "message",
                "channel": "ChatChannel",
                "params": {"room": "general"},
                "data": {"status": "joined"},
            }
            await ws.send_action(
                "ChatChannel", "speak", {"message": "hi"}, room="general"
            )
            msg = await ws.receive()
            assert msg["data"] == {"message": "hi", "sender": "ana"}
            # the client's send(): the receive action; data carries "action"
            # as it does from Action Cable clients
            await ws.send_action("ChatChannel", "receive", {"x": 1}, room="general")
            assert (await ws.receive())["data"] == {
                "echo": {"x": 1, "action": "receive"}
            }
            reply = await ws.call(
                "ChatChannel", "speak", {"message": "c"}, room="general"
            )
            assert reply["result"] is None
            rejected = await ws.subscribe("InboxChannel")
            assert (
                rejected
                == {
                    "type": "reject_subscription",
                    "channel": "InboxChannel",
                    "params": {},
                }
                or rejected["type"] == "confirm_subscription"
            )


async def test_mixed_clients_on_one_stream_in_memory() -> None:
    cable = make_cable()
    with trio.fail_after(LOSS_BOUND):
        async with (
            guide_test_client(cable, query={"user": "gus"}) as guide,
            cable_test_client(cable, query={"user": "ann"}) as official,
        ):
            assert (await guide.subscribe("ChatChannel", room="r"))["type"] == (
                "confirm_subscription"
            )
            assert (await official.subscribe("ChatChannel", room="r"))["type"] == (
                "confirm_subscription"
            )
            for client in (guide, official):
                await client.receive()  # {"status": "joined"}
            assert await cable.broadcast("chat_r", {"n": 1}) == 2
            await official.perform("ChatChannel", "speak", {"message": "m"}, room="r")
            want = [{"n": 1}, {"message": "m", "sender": "ann"}]
            assert [(await guide.receive())["data"] for _ in want] == want
            assert [(await official.receive())["message"] for _ in want] == want
            # Then the other (two connections' actions run concurrently: their
            # order is the order they finish, not the one they were sent in).
            await guide.send_action("ChatChannel", "speak", {"message": "g"}, room="r")
            gus = {"message": "g", "sender": "gus"}
            assert (await guide.receive())["data"] == gus
            assert (await official.receive())["message"] == gus


async def test_no_welcome_and_no_pings(autojump_clock: trio.testing.MockClock) -> None:
    cable = make_cable()
    async with guide_test_client(cable) as ws:
        await ws.subscribe("ChatChannel", room="quiet")
        await ws.receive()  # joined
        await trio.sleep(10 * cable.options.ping_interval)
        await cable.broadcast("chat_quiet", {"after": "a while"})
        # nothing else came in between: no welcome, no ping
        assert (await ws.receive())["data"] == {"after": "a while"}


async def test_bad_input_gets_the_guides_error_and_loses_nothing() -> None:
    cable = make_cable()
    with trio.fail_after(LOSS_BOUND):
        async with guide_test_client(cable) as ws:
            await ws.subscribe("ChatChannel", room="a")
            await ws.receive()
            for bad, reason in [
                ("{", "invalid_json"),
                ('{"command":"jump","channel":"ChatChannel"}', "unknown_command"),
                ('{"command":"message","channel":"ChatChannel"}', "not_subscribed"),
                ('{"command":"subscribe"}', "invalid_request"),
            ]:
                await ws.send_raw(bad)
                error = await ws.receive()
                assert (error["type"], error["reason"]) == ("error", reason)
            await ws.send_action("ChatChannel", "fly", room="a")
            error = await ws.receive()
            assert error["reason"] == "unknown_action"
            assert error["params"] == {"room": "a"}
            unknown = await ws.subscribe("Nope")
            assert unknown["reason"] == "unknown_channel"
            await ws.send_action("ChatChannel", "speak", {"message": "ok"}, room="a")
            assert (await ws.receive())["data"]["message"] == "ok"


async def test_a_refused_connection_shows_at_subscribe() -> None:
    cable = make_cable()
    with trio.fail_after(LOSS_BOUND):
        async with guide_test_client(cable, query={"user": "intruder"}) as ws:
            with pytest.raises(ConnectionRejected) as caught:
                await ws.subscribe("ChatChannel", room="a")
            assert caught.value.reason == "unauthorized"
            with pytest.raises(trio.EndOfChannel):
                await ws.receive()


async def test_leaving_ends_every_subscription_and_task() -> None:
    cable = make_cable()
    with trio.fail_after(LOSS_BOUND):
        async with cable.running():
            before = len(all_tasks())
            async with guide_test_client(cable) as ws:
                await ws.subscribe("ChatChannel", room="a")
                await ws.subscribe("ChatChannel", room="b")
                assert len(ws.connection.subscriptions) == 2
            await trio.testing.wait_all_tasks_blocked()
            assert cable.connections == frozenset()
            assert len(all_tasks()) == before
