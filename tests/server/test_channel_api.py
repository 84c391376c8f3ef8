"""Rails' channel API, completed (issue 12, part 2): remote disconnect,
``stream_for``/``broadcast_to``, ``stream_from`` with a callback,
``periodically`` timers and ``rescue_from`` handlers, in one process
(remote disconnect across processes: tests/interop/test_remote_disconnect.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, all_tasks, task_count, wait_until
from trio_cable import (
    Cable,
    CableError,
    Channel,
    Request,
    periodically,
    rescue_from,
)
from trio_cable.testing import cable_test_client


@dataclass(frozen=True)
class User:
    id: int
    name: str


def identity_cable() -> Cable:
    cable = Cable()

    @cable.connect
    async def authenticate(request: Request) -> Any:
        if "uid" in request.query:
            return User(int(request.query["uid"]), request.query.get("name", ""))
        return request.query.get("user")

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

    return cable


# -- remote disconnect ---------------------------------------------------------


async def test_disconnect_closes_only_the_matching_connections() -> None:
    cable = identity_cable()
    async with (
        cable.running(),
        cable_test_client(cable, query={"user": "ann"}) as ann1,
        cable_test_client(cable, query={"user": "ann"}) as ann2,
        cable_test_client(cable, query={"user": "bob"}) as bob,
        cable_test_client(cable) as anonymous,
    ):
        for ws in (ann1, ann2, bob, anonymous):
            await ws.subscribe("Room")
        assert await cable.disconnect("ann", reconnect=False) == 2
        with trio.fail_after(LOSS_BOUND):
            for ws in (ann1, ann2):
                assert await ws.receive() == {
                    "type": "disconnect",
                    "reason": "remote",
                    "reconnect": False,
                }
        await trio.testing.wait_all_tasks_blocked()
        assert {c.identity for c in cable.connections} == {"bob", None}
        assert await cable.broadcast("room", {"still": "here"}) == 2
        for ws in (bob, anonymous):
            assert (await ws.receive())["message"] == {"still": "here"}


async def test_disconnect_matches_fields_of_an_identity_object() -> None:
    cable = identity_cable()
    async with (
        cable.running(),
        cable_test_client(cable, query={"uid": "7", "name": "ann"}) as seven,
        cable_test_client(cable, query={"uid": "8", "name": "ann"}) as eight,
    ):
        assert await cable.disconnect({"id": 7}, reason="banned") == 1
        with trio.fail_after(LOSS_BOUND):
            assert (await seven.receive())["reason"] == "banned"
        assert await cable.disconnect({"id": 9}) == 0
        assert await cable.disconnect({"nope": 8}) == 0
        assert await cable.disconnect({"name": "ann"}) == 1  # eight, by name
        with trio.fail_after(LOSS_BOUND):
            assert (await eight.receive())["reconnect"] is True


async def test_disconnect_of_something_not_json_is_refused() -> None:
    cable = identity_cable()
    async with cable.running(), cable_test_client(cable, query={"user": "ann"}):
        with pytest.raises(TypeError):
            await cable.disconnect(object())
        assert len(cable.connections) == 1


async def test_a_channel_cannot_listen_to_the_cables_own_streams() -> None:
    cable = Cable()
    failures: list[BaseException] = []

    @cable.channel
    class Sneaky(Channel):
        async def subscribed(self) -> None:
            try:
                self.stream_from("_trio_cable:disconnect")
            except ValueError as exc:
                failures.append(exc)
                raise

    async with cable_test_client(cable) as ws:
        assert (await ws.subscribe("Sneaky"))["type"] == "reject_subscription"
    assert "reserved" in str(failures[0])


# -- stream names: stream_for / broadcast_to -------------------------------------


@dataclass
class Post:
    id: int


class Room:
    def __init__(self, slug: str) -> None:
        self.slug = slug

    def __cable_stream__(self) -> str:
        return f"room/{self.slug}"


def test_objects_name_their_streams_like_rails_broadcasting_for() -> None:
    class Comments(Channel):
        pass

    assert Comments.broadcasting_for("x") == "Comments:x"
    assert Comments.broadcasting_for(42) == "Comments:42"
    assert Comments.broadcasting_for(Post(7)) == "Comments:Post:7"
    assert Comments.broadcasting_for(Room("a b")) == "Comments:room/a b"
    assert Comments.broadcasting_for((Post(7), "likes")) == "Comments:Post:7:likes"
    for bad in (None, True, 1.5, object(), (), Comments):
        with pytest.raises(TypeError, match="cannot name a stream"):
            Comments.broadcasting_for(bad)

    class Liar:
        def __cable_stream__(self) -> int:
            return 1

    with pytest.raises(TypeError, match="returned int"):
        Comments.broadcasting_for(Liar())


def posts_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class PostChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_for(Post(int(self.params["id"])))

        async def like(self) -> None:
            self.broadcast_to(Post(int(self.params["id"])), {"liked": True})

    return cable


async def test_stream_for_and_broadcast_to_from_a_channel_the_class_and_a_thread() -> (
    None
):
    cable = posts_cable()
    channel = cable.channels["PostChannel"]
    async with cable_test_client(cable) as ws:
        await ws.subscribe("PostChannel", id=7)
        await ws.subscribe("PostChannel", id=8)
        assert cable.hub.streams() == ["PostChannel:Post:7", "PostChannel:Post:8"]
        await ws.perform("PostChannel", "like", {}, id=7)
        frame = await ws.receive()
        assert frame["message"] == {"liked": True}
        assert '"id":7' in frame["identifier"]
        assert channel.broadcast_to(Post(8), {"n": 1}) == 1
        assert (await ws.receive())["message"] == {"n": 1}
        sent = await trio.to_thread.run_sync(channel.broadcast_to, Post(7), {"n": 2})
        assert sent == 1
        assert (await ws.receive())["message"] == {"n": 2}


async def test_class_level_broadcast_to_needs_exactly_one_cable() -> None:
    class Lonely(Channel):
        pass

    with pytest.raises(CableError, match="registered on 0 cables"):
        Lonely.broadcast_to("x", {})
    Cable().channel(Lonely)
    Cable().channel(Lonely)
    with pytest.raises(CableError, match="registered on 2 cables"):
        Lonely.broadcast_to("x", {})


# -- stream_from with a callback -------------------------------------------------


async def test_stream_from_callback_transforms_and_filters_for_one_subscription() -> (
    None
):
    cable = Cable()

    @cable.channel
    class Scores(Channel):
        async def subscribed(self) -> None:
            if self.params.get("mine"):
                self.stream_from("scores", self.only_mine)
            else:
                self.stream_from("scores")

        def only_mine(self, data: dict[str, Any]) -> Any:
            if data["team"] == "boom":
                raise ValueError("a bad message")
            if data["team"] != "red":
                return None
            return {"red": data["score"]}

    async with (
        cable_test_client(cable) as everything,
        cable_test_client(cable) as mine,
    ):
        await everything.subscribe("Scores")
        await mine.subscribe("Scores", mine=True)
        for team, score in (("blue", 1), ("boom", 0), ("red", 2)):
            await cable.broadcast("scores", {"team": team, "score": score})
        assert [(await everything.receive())["message"] for _ in range(3)] == [
            {"team": "blue", "score": 1},
            {"team": "boom", "score": 0},
            {"team": "red", "score": 2},
        ]
        # blue filtered out, boom's failure dropped only that message
        assert (await mine.receive())["message"] == {"red": 2}
        await mine.unsubscribe("Scores", mine=True)
        await trio.testing.wait_all_tasks_blocked()
        assert cable.hub.subscribers("scores") == 1


# -- periodically ------------------------------------------------------------------


def timer_tasks() -> list[trio.lowlevel.Task]:
    """The tasks running a subscription's timer, found in the task tree."""
    return [t for t in all_tasks() if t.coro.cr_code.co_name == "_every"]


def ticking_cable(log: list[str]) -> Cable:
    cable = Cable()

    @cable.channel
    class Clock(Channel):
        async def subscribed(self) -> None:
            self.ticks = 0
            if self.params.get("extra"):
                self.periodically(self.extra, 5)

        @periodically(2)
        async def tick(self) -> None:
            self.ticks += 1
            self.transmit({"tick": self.ticks, "at": trio.current_time()})
            if self.ticks == 2:
                raise ValueError("the second tick fails")

        def extra(self) -> None:  # plain def: a worker thread
            log.append("extra")

        async def unsubscribed(self) -> None:
            log.append("unsubscribed")

    return cable


async def test_periodically_runs_from_confirmation_until_unsubscribe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    cable = ticking_cable(log)
    async with cable.running():
        before = task_count()
        async with cable_test_client(cable) as ws:
            await trio.testing.wait_all_tasks_blocked()
            idle = task_count()
            start = trio.current_time()
            await ws.subscribe("Clock", extra=True)
            assert len(timer_tasks()) == 2
            first = await ws.receive()
            assert first["message"]["tick"] == 1
            assert first["message"]["at"] - start == pytest.approx(2)
            assert (await ws.receive())["message"]["tick"] == 2
            error = await ws.receive()  # the second tick failed: reported
            assert (error["type"], error["reason"]) == ("error", "server_error")
            assert "tick" in error["message"]
            third = await ws.receive()  # and the timer carried on
            assert third["message"]["tick"] == 3
            assert third["message"]["at"] - start == pytest.approx(6)
            await ws.unsubscribe("Clock", extra=True)
            # unsubscribed() runs once both timers ended (a worker thread
            # may still be finishing the plain-def one's call)
            await wait_until(lambda: "unsubscribed" in log)
            await trio.testing.wait_all_tasks_blocked()
            assert timer_tasks() == []
            assert task_count() == idle
            # the thread timer's call (at 5 s) ended before unsubscribed()
            assert log == ["extra", "unsubscribed"]
            await trio.sleep(60)
            with trio.move_on_after(0):
                frame = await ws.receive()
                pytest.fail(f"a timer outlived its subscription: {frame}")
        await trio.testing.wait_all_tasks_blocked()
        assert task_count() == before


async def test_timers_end_with_the_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    cable = ticking_cable(log)
    async with cable.running():
        before = task_count()
        async with cable_test_client(cable) as ws:
            await ws.subscribe("Clock", extra=True)
            assert (await ws.receive())["message"]["tick"] == 1
            assert len(timer_tasks()) == 2
        await trio.testing.wait_all_tasks_blocked()
        assert timer_tasks() == []
        assert task_count() == before
        assert log == ["unsubscribed"]


async def test_periodically_refuses_a_bad_interval_and_is_not_an_action() -> None:
    with pytest.raises(ValueError, match="positive"):
        periodically(0)
    log: list[str] = []
    cable = ticking_cable(log)
    async with cable_test_client(cable) as ws:
        await ws.subscribe("Clock")
        await ws.perform("Clock", "tick", {})
        assert (await ws.receive())["reason"] == "unknown_action"


# -- rescue_from -------------------------------------------------------------------


class Oops(Exception):
    pass


def rescuing_cable(handled: list[str]) -> Cable:
    cable = Cable()

    @cable.channel
    class Base(Channel):
        @rescue_from(KeyError)
        def missing(self, exc: KeyError) -> None:  # plain def: a worker thread
            handled.append(f"base {exc!r}")
            self.transmit({"missing": str(exc)})

    @cable.channel
    class Shop(Base):
        async def subscribed(self) -> None:
            if self.params.get("fail"):
                raise Oops("in subscribed")
            self.stream_from("shop")

        async def unsubscribed(self) -> None:
            raise Oops("in unsubscribed")

        @rescue_from(Oops, LookupError)
        async def oops(self, exc: Exception) -> None:
            handled.append(f"shop {exc}")
            if "handler" in str(exc):
                raise RuntimeError("the handler fails too")
            self.transmit({"sorry": str(exc)})

        async def buy(self, data: dict[str, Any]) -> None:
            raise Oops(data["what"])

        def lookup(self, data: dict[str, Any]) -> None:
            raise KeyError(data["what"])

        async def divide(self) -> None:
            _ = 1 / 0

    return cable


async def test_rescue_from_handles_actions_and_hooks() -> None:
    handled: list[str] = []
    cable = rescuing_cable(handled)
    async with cable_test_client(cable) as ws:
        # subscribed() raised, the handler handled it: confirmed, not rejected
        assert (await ws.subscribe("Shop", fail=True))["type"] == "confirm_subscription"
        assert (await ws.receive())["message"] == {"sorry": "in subscribed"}
        await ws.perform("Shop", "buy", {"what": "milk"}, fail=True)
        assert (await ws.receive())["message"] == {"sorry": "milk"}
        # KeyError is a LookupError: the subclass's handler comes first
        await ws.perform("Shop", "lookup", {"what": "eggs"}, fail=True)
        assert (await ws.receive())["message"] == {"sorry": "'eggs'"}
        # no handler: today's behaviour
        await ws.perform("Shop", "divide", {}, fail=True)
        assert (await ws.receive())["reason"] == "server_error"
        # a handler that raises: reported as the original error would be
        await ws.perform("Shop", "buy", {"what": "handler"}, fail=True)
        error = await ws.receive()
        assert (error["reason"], error["message"]) == (
            "server_error",
            "action 'buy' failed",
        )
        await ws.unsubscribe("Shop", fail=True)
        await trio.testing.wait_all_tasks_blocked()
    assert handled == [
        "shop in subscribed",
        "shop milk",
        "shop 'eggs'",
        "shop handler",
        "shop in unsubscribed",
    ]


async def test_rescue_from_in_a_base_class_and_refusals() -> None:
    handled: list[str] = []
    cable = rescuing_cable(handled)

    @cable.channel
    class Lookups(cable.channels["Base"]):  # type: ignore[misc]  # a registered class
        def find(self, data: dict[str, Any]) -> None:
            raise KeyError(data["what"])

    async with cable_test_client(cable) as ws:
        await ws.subscribe("Lookups")
        await ws.perform("Lookups", "find", {"what": "x"})
        assert (await ws.receive())["message"] == {"missing": "'x'"}
        await ws.perform("Lookups", "missing", {})  # a handler is no action
        assert (await ws.receive())["reason"] == "unknown_action"
    assert handled == ["base KeyError('x')"]
    with pytest.raises(TypeError):
        rescue_from()
    with pytest.raises(TypeError):
        rescue_from(KeyboardInterrupt)


async def test_rescue_from_handles_a_timers_error_and_the_timer_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable = Cable()

    @cable.channel
    class Flaky(Channel):
        async def subscribed(self) -> None:
            self.calls = 0

        @periodically(1)
        async def poll(self) -> None:
            self.calls += 1
            raise Oops(f"call {self.calls}")

        @rescue_from(Oops)
        def retry_later(self, exc: Oops) -> None:
            self.transmit({"handled": str(exc)})

    async with cable_test_client(cable) as ws:
        await ws.subscribe("Flaky")
        assert (await ws.receive())["message"] == {"handled": "call 1"}
        assert (await ws.receive())["message"] == {"handled": "call 2"}


async def test_a_call_answered_by_rescue_from_gets_the_handlers_value() -> None:
    cable = Cable()

    @cable.channel
    class Orders(Channel):
        async def place(self, data: dict[str, Any]) -> dict[str, Any]:
            if data["qty"] < 1:
                raise Oops("nothing to order")
            return {"placed": data["qty"]}

        @rescue_from(Oops)
        async def refused(self, exc: Oops) -> dict[str, Any]:
            return {"refused": str(exc)}

        async def broken(self) -> None:
            raise RuntimeError("no handler for this")

    async with cable_test_client(cable) as ws:
        await ws.subscribe("Orders")
        assert (await ws.call("Orders", "place", {"qty": 2}))["result"] == {"placed": 2}
        reply = await ws.call("Orders", "place", {"qty": 0})
        assert reply["result"] == {"refused": "nothing to order"}
        failed = await ws.call("Orders", "broken")
        assert failed["error"]["reason"] == "server_error"  # no handler: as before
