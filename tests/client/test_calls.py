"""``Subscription.call()``: the Python client against trio_cable over real
sockets (each socket transport). A call returns the action's return value,
after what the action transmitted; errors, timeouts and lost connections
raise; a pending call ends with its subscription and its connection, and
nothing keeps running on either side."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import LOSS_BOUND, Transport, all_tasks
from trio_cable import ActionError, Cable, Channel, serve_cable
from trio_cable.client import (
    ActionFailed,
    CallTimeout,
    ClientError,
    Connected,
    ConnectionLost,
    open_cable_client,
)

cable = Cable()


class Gate:
    """Opened by a test to let ``MathChannel.wait`` return."""

    event = trio.Event()


@cable.channel
class MathChannel(Channel):
    async def subscribed(self) -> None:
        self.stream_from("math")

    async def add(self, data: dict[str, Any]) -> int:
        self.transmit({"adding": [data["a"], data["b"]]})
        return int(data["a"]) + int(data["b"])

    def add_in_a_thread(self, data: dict[str, Any]) -> dict[str, int]:
        self.transmit({"adding": "in a thread"})
        return {"sum": int(data["a"]) + int(data["b"])}

    async def nothing(self) -> None:
        pass

    async def validate(self, data: dict[str, Any]) -> None:
        raise ActionError("invalid", "a must be positive")

    async def boom(self) -> None:
        raise RuntimeError("a bug")

    async def opaque(self) -> object:
        return object()

    async def wait(self) -> str:
        await Gate.event.wait()
        return "released"


@pytest.fixture
async def url(nursery: trio.Nursery, transport: Transport) -> str:
    Gate.event = trio.Event()
    port = await nursery.start(
        partial(serve_cable, transport=transport), cable, "127.0.0.1", 0
    )
    return f"ws://127.0.0.1:{port}/cable"


def running(name: str) -> list[trio.lowlevel.Task]:
    """Tasks whose coroutine (or one it awaits) is ``name``."""
    found = []
    for task in all_tasks():
        coro: Any = task.coro
        while coro is not None:
            if getattr(coro, "__qualname__", "").endswith(name):
                found.append(task)
                break
            coro = getattr(coro, "cr_await", None)
    return found


async def test_call_returns_the_result_after_what_the_action_sent(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("MathChannel") as math,
        ):
            assert await math.receive_event() == Connected(reconnected=False)
            assert await math.call("add", {"a": 1, "b": 2}) == 3
            assert math.pending == 1  # the transmit came first, and is here
            assert await math.receive() == {"adding": [1, 2]}
            assert await math.call("add_in_a_thread", {"a": 2, "b": 2}) == {"sum": 4}
            assert await math.receive() == {"adding": "in a thread"}
            assert await math.call("nothing") is None
            # plain performs still get no reply: only the broadcast arrives
            await math.perform("add", {"a": 5, "b": 5})
            assert await math.receive() == {"adding": [5, 5]}
            await cable.broadcast("math", {"after": True})
            assert await math.receive() == {"after": True}
            assert math.pending == 0


async def test_concurrent_calls_get_their_own_replies(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        results: dict[int, int] = {}
        async with (
            open_cable_client(url) as client,
            client.subscribe("MathChannel") as math,
        ):

            async def one(i: int) -> None:
                results[i] = await math.call("add", {"a": i, "b": 1000})

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
        assert results == {i: i + 1000 for i in range(20)}


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("validate", "invalid"),
        ("boom", "server_error"),
        ("opaque", "invalid_result"),
        ("missing", "unknown_action"),
        ("_private", "invalid_action"),
    ],
)
async def test_errors_come_back_to_the_caller(
    url: str, action: str, reason: str
) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("MathChannel") as math,
        ):
            with pytest.raises(ActionFailed) as caught:
                await math.call(action, {"a": -1})
            assert caught.value.reason == reason
            assert caught.value.action == action
            if reason == "invalid":
                assert caught.value.message == "a must be positive"
            # tagged to the call, not an error frame on the subscription
            assert math.pending == 1
            assert await math.receive_event() == Connected(reconnected=False)
            # and the connection carries on
            assert await math.call("add", {"a": 1, "b": 1}) == 2


async def test_a_timeout_is_a_clear_error_and_the_late_reply_is_dropped(
    url: str,
) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("MathChannel") as math,
        ):
            with pytest.raises(CallTimeout, match=r"no reply to 'wait' within 0.2s"):
                await math.call("wait", timeout=0.2)
            assert math._entry.calls == {}
            Gate.event.set()  # the late reply comes and is dropped
            assert await math.call("add", {"a": 2, "b": 3}) == 5
            assert await math.receive_event() == Connected(reconnected=False)
            assert await math.receive() == {"adding": [2, 3]}
            assert math.pending == 0


async def test_a_lost_connection_ends_the_waiting_call(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("MathChannel") as math,
        ):
            async with trio.open_nursery() as nursery:
                failed: list[BaseException] = []

                async def waiting() -> None:
                    try:
                        await math.call("wait")
                    except ConnectionLost as exc:
                        failed.append(exc)

                nursery.start_soon(waiting)
                await trio.testing.wait_all_tasks_blocked()
                assert running("MathChannel.wait")
                (conn,) = cable.connections
                conn.close("remote", reconnect=True)
            assert len(failed) == 1
            # the client reconnects and calls work again
            assert await math.call("add", {"a": 1, "b": 2}) == 3
            assert client.reconnects == 1


async def test_pending_calls_end_with_their_subscription_and_connection(
    url: str,
) -> None:
    with trio.fail_after(LOSS_BOUND):
        ended: list[BaseException] = []
        async with open_cable_client(url) as client:

            async def call_and_record(sub: Any) -> None:
                try:
                    await sub.call("wait")
                except ClientError as exc:
                    ended.append(exc)

            # The subscription is left first, then the nursery waits for the
            # call's task: leaving must end the waiting call.
            async with (
                trio.open_nursery() as nursery,
                client.subscribe("MathChannel") as math,
            ):
                nursery.start_soon(call_and_record, math)
                await trio.testing.wait_all_tasks_blocked()
                assert running("MathChannel.wait")  # the server runs it
            assert len(ended) == 1
            assert "left" in str(ended[0])
            # An action in flight finishes (as in Rails; unsubscribed() runs
            # after it), but its reply is not sent to a subscription that ended.
            (conn,) = cable.connections
            await trio.testing.wait_all_tasks_blocked()
            assert conn.subscriptions == {}
            Gate.event.set()
            await trio.testing.wait_all_tasks_blocked()
            assert running("MathChannel.wait") == []
            # The connection's end cancels an action in flight.
            Gate.event = trio.Event()
            async with (
                client.subscribe("MathChannel") as math,
                trio.open_nursery() as calls,
            ):
                calls.start_soon(math.call, "wait")
                await trio.testing.wait_all_tasks_blocked()
                assert running("MathChannel.wait")
                calls.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert running("MathChannel.wait") == []
        assert running("Subscription.call") == []
        assert cable.connections == frozenset()
