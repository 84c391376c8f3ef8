"""Mistakes are visible: a misspelt channel or action name is logged once
per connection at WARNING, with the name asked and the names that exist;
the error frame says it too; and ``perform(..., wait=True)`` of the Python
client raises for it (against a real socket server)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from tests.helpers import served
from trio_cable import Cable, Channel
from trio_cable.client import (
    ActionFailed,
    CallTimeout,
    ServerError,
    SubscriptionRejected,
    open_cable_client,
)
from trio_cable.protocol.server import MAX_WARNED_MISTAKES
from trio_cable.testing import cable_test_client


def chat_cable() -> Cable:
    cable = Cable()

    @cable.channel
    class ChatChannel(Channel):
        async def speak(self, data: dict[str, Any]) -> None:
            self.transmit({"said": data["message"]})

        async def whoami(self) -> None:
            self.transmit({"user": None})

        async def explode(self) -> None:
            raise RuntimeError("a bug in an action")

        async def linger(self) -> None:
            await trio.sleep_forever()

    @cable.channel
    class EchoChannel(Channel):
        pass

    return cable


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "trio_cable.connection"
    ]


async def test_unknown_channel_is_warned_once_per_connection_with_a_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "trio_cable")
    cable = chat_cable()
    for _ in range(2):  # two connections: each warns once
        async with cable_test_client(cable) as ws:
            for _ in range(3):  # the same typo again: INFO, not WARNING
                rejected = await ws.subscribe("ChatChanel", room="a")
                assert rejected["type"] == "reject_subscription"
                assert rejected["reason"] == "unknown_channel"
                assert rejected["message"] == (
                    "no channel 'ChatChanel' (did you mean 'ChatChannel'? "
                    "channels: ChatChannel, EchoChannel)"
                )
            await ws.subscribe("Nothing")  # another mistake: warned too
    found = warnings(caplog)
    hint = (
        "unknown_channel: no channel 'ChatChanel' (did you mean 'ChatChannel'? "
        "channels: ChatChannel, EchoChannel)"
    )
    assert [m.split(": ", 1)[1] for m in found] == [
        hint,
        "unknown_channel: no channel 'Nothing' (channels: ChatChannel, EchoChannel)",
    ] * 2
    assert cable.counters["unknown_channel"] == 8


async def test_unknown_action_is_warned_once_and_the_error_frame_says_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cable = chat_cable()
    async with cable_test_client(cable) as ws:
        await ws.subscribe("ChatChannel")
        for _ in range(2):
            await ws.perform("ChatChannel", "speek", {"message": "hi"})
            error = await ws.receive()
            assert error["reason"] == "unknown_action"
            assert "did you mean 'speak'?" in error["message"]
        await ws.perform("ChatChannel", "speak", {"message": "hi"})
        assert (await ws.receive())["message"] == {"said": "hi"}  # carries on
    (warning,) = warnings(caplog)
    assert warning.endswith(
        "unknown_action: ChatChannel has no action 'speek' (did you mean 'speak'? "
        "actions: explode, linger, speak, whoami)"
    )
    assert cable.counters["unknown_action"] == 2


async def test_endless_made_up_names_stop_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cable = chat_cable()
    async with cable_test_client(cable) as ws:
        for n in range(MAX_WARNED_MISTAKES + 10):
            assert (await ws.subscribe(f"Made{n}"))["type"] == "reject_subscription"
    assert len(warnings(caplog)) == MAX_WARNED_MISTAKES


async def test_python_client_perform_wait_raises_for_a_failed_action() -> None:
    cable = chat_cable()
    async with (
        served(cable) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
        client.subscribe("ChatChannel") as chat,
    ):
        await chat.perform("speak", {"message": "hi"}, wait=True)  # ran: returns
        assert await chat.receive() == {"said": "hi"}

        with pytest.raises(ActionFailed) as typo:
            await chat.perform("speek", {"message": "hi"}, wait=True)
        assert typo.value.reason == "unknown_action"
        assert "did you mean 'speak'?" in typo.value.message

        with pytest.raises(ActionFailed) as bug:
            await chat.perform("explode", wait=True)
        assert bug.value.reason == "server_error"

        # Without wait, perform returns; the failure is an event, as before.
        await chat.perform("speek")
        while not isinstance(event := await chat.receive_event(), ServerError):
            pass
        assert event.reason == "unknown_action"

        # An action still running when the timeout passes raises
        # CallTimeout; the connection's other subscriptions carry on (this
        # one's later commands wait for it: they run in order).
        with pytest.raises(CallTimeout):
            await chat.perform("linger", wait=0.2)
        async with client.subscribe("ChatChannel", room="b") as other:
            await other.perform("whoami", wait=True)


async def test_python_client_rejection_carries_the_hint() -> None:
    async with (
        served(chat_cable()) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
    ):
        with pytest.raises(SubscriptionRejected) as rejected:
            async with client.subscribe("ChatChanel"):
                pass  # pragma: no cover
    assert rejected.value.reason == "unknown_channel"
    assert rejected.value.message is not None
    assert "did you mean 'ChatChannel'?" in rejected.value.message
    assert "did you mean 'ChatChannel'?" in str(rejected.value)
