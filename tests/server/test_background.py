"""Background tasks beside a cable: ``@cable.background`` and
``cable.start_soon`` run in the cable's own nursery for its lifetime, on
every transport, and are cancelled first at shutdown.

(Under real Hypercorn: ``tests/server/shutdown_app.py`` has a background
ticker, checked by ``test_hypercorn_sigterm_sends_server_restart_to_200_clients``.)
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack

import pytest
import trio

from tests.helpers import LOSS_BOUND, RawClient, Transport, all_tasks, served
from trio_cable import Cable, CableError, Channel
from trio_cable.testing import cable_test_client

TICKS = json.dumps({"channel": "TickChannel"})
# Timeouts far above any prompt shutdown: a shutdown that waited on one of
# them (a background task not cancelled, a drain stuck) shows as >= 20 s.
SLOW = {"close_timeout": 20.0, "hook_timeout": 20.0}


def ticking_cable(events: list[str]) -> Cable:
    cable = Cable(**SLOW)

    @cable.channel
    class TickChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("ticks")

        async def unsubscribed(self) -> None:
            events.append("unsubscribed")

    @cable.background
    async def ticker() -> None:
        n = 0
        try:
            while True:
                n += 1
                await cable.broadcast("ticks", {"tick": n})
                await trio.sleep(0.01)
        finally:
            events.append("background cancelled")

    return cable


async def test_background_runs_on_every_transport_and_is_cancelled_first(
    transport: Transport,
) -> None:
    events: list[str] = []
    cable = ticking_cable(events)
    before = all_tasks()
    async with trio.open_nursery() as outer:
        async with AsyncExitStack() as stack:
            port = await stack.enter_async_context(served(cable, transport))
            client = await RawClient.connect(port, welcome=True)
            await client.subscribe(TICKS)
            with trio.fail_after(LOSS_BOUND):
                tick = await client.receive()
            assert tick is not None
            assert tick["message"]["tick"] >= 1  # the background task broadcasts
            # the client keeps reading (and answers the close handshake)
            outer.start_soon(client.read_to_end)
            started = trio.current_time()
        elapsed = trio.current_time() - started
        await client.aclose()
    assert events == ["background cancelled", "unsubscribed"]
    assert not cable.is_running
    assert all_tasks() == before
    assert elapsed < SLOW["close_timeout"] / 2, elapsed  # waited on no timeout


async def test_background_runs_beside_the_test_client() -> None:
    events: list[str] = []
    cable = ticking_cable(events)
    before = all_tasks()
    async with cable_test_client(cable) as ws:
        await ws.subscribe("TickChannel")
        assert (await ws.receive())["message"]["tick"] >= 1
    assert events == ["unsubscribed", "background cancelled"]  # client left first
    assert all_tasks() == before


async def test_start_soon_runs_until_the_cable_stops() -> None:
    cable = Cable()
    stopped = trio.Event()

    async def worker(stream: str) -> None:
        try:
            while True:
                await cable.broadcast(stream, "work")
                await trio.sleep(0.01)
        finally:
            stopped.set()

    @cable.channel
    class WorkChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("work")

        async def start(self) -> None:
            cable.start_soon(worker, "work")  # outlives this action

    with pytest.raises(CableError, match="not running"):
        cable.start_soon(worker, "work")
    before = all_tasks()
    async with cable_test_client(cable) as ws:
        await ws.subscribe("WorkChannel")
        await ws.perform("WorkChannel", "start")
        assert (await ws.receive())["message"] == "work"
        assert not stopped.is_set()
    assert stopped.is_set()
    assert all_tasks() == before
    with pytest.raises(CableError, match="not running"):
        cable.start_soon(worker, "work")


async def test_a_crashing_background_task_is_logged_and_the_cable_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cable = Cable()
    crashed = trio.Event()

    @cable.channel
    class EchoChannel(Channel):
        async def ping(self) -> None:
            self.transmit("pong")

    @cable.background
    async def broken() -> None:
        crashed.set()
        raise ValueError("bug in a background task")

    async with cable_test_client(cable) as ws:
        await crashed.wait()
        await ws.subscribe("EchoChannel")
        await ws.perform("EchoChannel", "ping")
        assert (await ws.receive())["message"] == "pong"
    crash = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(crash) == 1
    assert "background task" in crash[0].getMessage()
    assert "broken" in crash[0].getMessage()
    assert crash[0].exc_info is not None
    assert isinstance(crash[0].exc_info[1], ValueError)


async def test_background_restarts_with_each_run() -> None:
    cable = Cable()
    runs: list[int] = []

    @cable.background
    async def count_runs() -> None:
        runs.append(1)
        await trio.sleep_forever()

    for n in (1, 2):
        async with cable.running():
            await trio.testing.wait_all_tasks_blocked()
            assert len(runs) == n
