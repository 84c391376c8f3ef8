"""The extended protocol's server side in trio, on the in-memory transport:
pongs and ``no_pong`` (with ``autojump_clock``), history on a live cable."""

from __future__ import annotations

import json

import trio
import trio.testing

from trio_cable import Cable, Channel
from trio_cable.testing import cable_test_client, identifier_for

EXT = ["actioncable-v1-ext-json"]


def make_cable(**options: object) -> Cable:
    cable = Cable(**options)  # type: ignore[arg-type]

    @cable.channel
    class Feed(Channel):
        async def subscribed(self) -> None:
            self.stream_from("feed")

    return cable


async def test_a_silent_ext_client_is_disconnected_with_no_pong(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable = make_cable(ping_interval=1.0, pong_timeout=5.0)
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as silent,
        cable_test_client(cable, subprotocols=EXT) as chatty,
        cable_test_client(cable) as plain,
    ):
        start = trio.current_time()

        async def answer_pings() -> None:
            while True:
                frame = await chatty.receive(pings=True)
                if frame.get("type") == "ping":
                    await chatty.send_raw('{"command":"pong"}')

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_pings)
            frame = await silent.receive()
            assert frame == {
                "type": "disconnect",
                "reason": "no_pong",
                "reconnect": True,
            }
            # After the timeout, at the first ping past it.
            assert 5.0 <= trio.current_time() - start <= 6.0 + 1e-9
            await trio.sleep(20)
            assert chatty.connection in cable.connections
            # Plain clients cannot pong: never cut for it.
            assert plain.connection in cable.connections
            nursery.cancel_scope.cancel()
        assert cable.counters["no_pong"] == 1


async def test_history_on_a_live_cable_with_the_hand_off() -> None:
    """Subscribing with a position gets exactly what came after it."""
    cable = make_cable(history=["feed"])
    identifier = json.dumps({"channel": "Feed"})
    async with cable.running():
        for n in range(5):
            await cable.broadcast("feed", {"n": n})
        epoch = cable.hub.history.epoch  # type: ignore[union-attr]
        async with cable_test_client(cable, subprotocols=EXT) as client:
            history = {"streams": {"feed": {"epoch": epoch, "offset": 2}}}
            subscribe = {"command": "subscribe", "identifier": identifier}
            await client.send_raw(json.dumps({**subscribe, "history": history}))
            frames = [await client.receive() for _ in range(5)]
            assert [f.get("type") for f in frames] == [
                "confirm_subscription",
                None,
                None,
                None,
                "confirm_history",
            ]
            assert [f["offset"] for f in frames[1:4]] == [3, 4, 5]
            await cable.broadcast("feed", {"n": 5})
            live = await client.receive()
            assert (live["message"], live["offset"]) == ({"n": 5}, 6)
            # A position from another epoch: rejected, live goes on.
            history = {"streams": {"feed": {"epoch": "old", "offset": 1}}}
            command = {"command": "history", "identifier": identifier}
            await client.send_raw(json.dumps({**command, "history": history}))
            assert await client.receive() == {
                "type": "reject_history",
                "identifier": identifier,
            }


def whisper_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class Typing(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"typing:{self.params['room']}", whisper=True)

    @cable.channel
    class Quiet(Channel):
        async def subscribed(self) -> None:
            self.stream_from("quiet")

    return cable


def whisper(channel: str, data: object, **params: object) -> str:
    identifier = identifier_for(channel, **params)
    return json.dumps({"command": "whisper", "identifier": identifier, "data": data})


async def test_whispers_reach_the_others_not_the_sender() -> None:
    cable = whisper_cable()
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as ann,
        cable_test_client(cable, subprotocols=EXT) as bob,
        cable_test_client(cable, subprotocols=EXT) as eve,
    ):
        for client in (ann, bob):
            await client.subscribe("Typing", room="r")
        await eve.subscribe("Typing", room="elsewhere")
        await ann.send_raw(whisper("Typing", {"typing": True}, room="r"))
        frame = await bob.receive()
        assert frame["message"] == {"typing": True}
        assert "offset" not in frame  # never stored
        # Not the sender, not another room; a broadcast after it comes first.
        await cable.broadcast("typing:r", {"marker": 1})
        assert (await ann.receive())["message"] == {"marker": 1}
        await cable.broadcast("typing:elsewhere", {"marker": 2})
        assert (await eve.receive())["message"] == {"marker": 2}


async def test_a_stream_not_opened_for_whispers_refuses_them() -> None:
    cable = whisper_cable()
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as ann,
        cable_test_client(cable, subprotocols=EXT) as bob,
    ):
        await ann.subscribe("Quiet")
        await bob.subscribe("Quiet")
        await ann.send_raw(whisper("Quiet", {"typing": True}))
        error = await ann.receive()
        assert error["type"] == "error"
        assert error["reason"] == "whisper_not_allowed"
        await ann.send_raw(whisper("Typing", {"x": 1}, room="r"))  # not subscribed
        assert (await ann.receive())["reason"] == "not_subscribed"
        await cable.broadcast("quiet", {"marker": 1})
        assert (await bob.receive())["message"] == {"marker": 1}


async def test_whispers_count_against_the_rate_limit() -> None:
    cable = Cable(commands_per_second=1, command_burst=3)
    cable.channel(whisper_cable().channels["Typing"])
    async with (
        cable.running(),
        cable_test_client(cable, subprotocols=EXT) as ann,
        cable_test_client(cable, subprotocols=EXT) as bob,
    ):
        await ann.subscribe("Typing", room="r")
        await bob.subscribe("Typing", room="r")
        for n in range(5):
            await ann.send_raw(whisper("Typing", {"n": n}, room="r"))
        error = await ann.receive()
        assert error["reason"] == "rate_limited"
        got = [(await bob.receive())["message"] for _ in range(1)]
        await cable.broadcast("typing:r", {"marker": 1})
        while (frame := await bob.receive())["message"] != {"marker": 1}:
            got.append(frame["message"])
        assert len(got) < 5
