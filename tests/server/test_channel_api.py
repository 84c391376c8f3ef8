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

from tests.helpers import LOSS_BOUND
from trio_cable import Cable, Channel, Request
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
