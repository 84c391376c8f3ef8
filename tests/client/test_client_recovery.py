"""The Python client's extended protocol (``actioncable-v1-ext-json``)
against real servers: recovery of what a dropped connection missed, the
session resumed, history lost surfaced, whispers, and the fallback to
``actioncable-v1-json`` against a server without the extended protocol.

The recovery test takes its server side as a parameter (``side``): a
real chat_app process behind a TCP proxy the test cuts; two processes on
one redis-server, the client's worker killed and started again midway;
the same, the client's reconnect landing on the other worker.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from tests.helpers import (
    LOSS_BOUND,
    ServerSide,
    all_once_across_a_drop,
    served,
    tcp_proxy,
)
from tests.helpers.workers import Drop, side_fixture
from tests.helpers.wsclient import silent_client_dropped
from tests.interop.servers import ServerKind
from trio_cable import Cable, Channel, HistoryPolicy
from trio_cable.client import (
    ClientError,
    ClientEvent,
    Connected,
    Disconnected,
    HistoryLost,
    Message,
    Recovered,
    Subscription,
    make_identifier,
    open_cable_client,
)

#: The server sides a recovery test runs against: (process kind, drop);
#: see tests/helpers/workers.py.
SIDES: list[tuple[ServerKind, Drop]] = [
    ("direct", "cut"),
    ("hypercorn", "cut"),
    ("direct", "restart"),
    ("direct", "other-worker"),
]


side = side_fixture(SIDES)


async def collect(sub: Subscription, events: list[ClientEvent], count: int) -> None:
    """Read ``sub``'s events into ``events`` until ``count`` messages came."""
    while sum(isinstance(e, Message) for e in events) < count:
        with trio.fail_after(LOSS_BOUND):  # a loss bound, not a wait
            events.append(await sub.receive_event())


async def test_300_broadcasts_exactly_once_in_order_across_a_drop(
    side: ServerSide,
) -> None:
    """Subscribed to a stream with history; 300 numbered broadcasts at
    about 100/s over HTTP; the connection dropped midway. The client
    resumes its session (no second ``subscribed()``; after a worker was
    killed, a fresh session and a second subscribe), asks for what it
    missed from its last epoch/offset, and gets each broadcast once, in
    order."""
    room = uuid.uuid4().hex[:8]
    identifier = make_identifier("FeedChannel", {"room": room})
    events: list[ClientEvent] = []
    async with (
        open_cable_client(side.url, reconnect_delay=0.3) as client,
        client.subscribe("FeedChannel", room=room) as feed,
    ):
        assert client.extended
        first_sid = client.session_id
        assert first_sid

        async def received(count: int) -> list[int]:
            await collect(feed, events, count)
            return [e.data["n"] for e in events if isinstance(e, Message)]

        numbers = await all_once_across_a_drop(
            side.broadcast, f"feed:{room}", received, side.disruption
        )
        # The replay's end may come after the last number (the client back
        # after the last broadcast).
        while Recovered() not in events:
            with trio.fail_after(LOSS_BOUND):  # a loss bound, not a wait
                events.append(await feed.receive_event())
        assert client.reconnects == 1
        assert client.session_id not in (None, first_sid)  # a new one each time
    assert [e.data["n"] for e in events if isinstance(e, Message)] == numbers
    connected, dropped, *after = [e for e in events if not isinstance(e, Message)]
    assert connected == Connected(reconnected=False)
    assert isinstance(dropped, Disconnected)
    assert dropped.reconnecting
    stats = await side.stats()
    if side.keeps_session:
        # Resumed: confirmed with no subscribe; then the replay was complete.
        assert after == [Connected(reconnected=True, restored=True), Recovered()]
        assert stats["events"][f"subscribed {identifier}"] == 1
    else:
        assert after == [Connected(reconnected=True), Recovered()]
        assert stats["events"][f"subscribed {identifier}"] == 2


def short_history_cable(**options: Any) -> Cable:
    cable = Cable(history={"feed:*": HistoryPolicy(limit=3)}, **options)

    @cable.channel
    class FeedChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"feed:{self.params['room']}")

    return cable


async def next_change(sub: Subscription) -> ClientEvent:
    """The next event that is not a message."""
    with trio.fail_after(LOSS_BOUND):
        while isinstance(event := await sub.receive_event(), Message):
            pass
    return event


@pytest.mark.parametrize("resume", [True, False], ids=["restored", "resubscribed"])
async def test_history_gone_is_surfaced_and_live_goes_on(resume: bool) -> None:
    """More broadcasts than the stream keeps while the client is away: the
    server answers ``reject_history`` and the consumer gets
    :class:`HistoryLost`, whether the session was resumed (``history``
    command) or not (``subscribe`` with history; ``session_ttl=0``)."""
    cable = short_history_cable(session_ttl=300.0 if resume else 0)
    async with (
        served(cable) as port,
        tcp_proxy(port) as proxy,
        open_cable_client(
            f"ws://127.0.0.1:{proxy.port}/cable", reconnect_delay=0.05
        ) as client,
        client.subscribe("FeedChannel", room="r") as feed,
    ):
        await cable.broadcast("feed:r", {"n": 0})
        assert await next_message(feed) == {"n": 0}
        proxy.refuse()  # down until admitted: the client cannot be back
        assert isinstance(await next_change(feed), Disconnected)
        for n in range(1, 6):  # 5 missed, 3 kept: the first missed is gone
            await cable.broadcast("feed:r", {"n": n})
        proxy.admit()
        assert await next_change(feed) == Connected(reconnected=True, restored=resume)
        assert await next_change(feed) == HistoryLost()
        await cable.broadcast("feed:r", {"n": 6})
        assert await next_message(feed) == {"n": 6}


async def next_message(sub: Subscription) -> Any:
    with trio.fail_after(LOSS_BOUND):
        return await sub.receive()


def typing_cable(**options: Any) -> Cable:
    cable = Cable(**options)

    @cable.channel
    class TypingChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("typing", whisper=True)

    return cable


async def test_whispers_reach_the_others_not_the_sender() -> None:
    cable = typing_cable()
    async with served(cable) as port:
        url = f"ws://127.0.0.1:{port}/cable"
        async with (
            open_cable_client(url) as ann,
            open_cable_client(url) as bob,
            ann.subscribe("TypingChannel") as ann_typing,
            bob.subscribe("TypingChannel") as bob_typing,
        ):
            await ann_typing.whisper({"typing": "ann"})
            assert await next_message(bob_typing) == {"typing": "ann"}
            await cable.broadcast("typing", {"marker": 1})
            # The marker came after the whisper: ann's own never came.
            assert await next_message(ann_typing) == {"marker": 1}
            assert await next_message(bob_typing) == {"marker": 1}


async def test_falls_back_to_actioncable_v1_json() -> None:
    """A server without the extended protocol selects the plain one from
    the client's offer: no session, no history asked, no whispers."""
    cable = typing_cable(extended_protocol=False)
    async with (
        served(cable) as port,
        tcp_proxy(port) as proxy,
        open_cable_client(
            f"ws://127.0.0.1:{proxy.port}/cable", reconnect_delay=0.05
        ) as client,
        client.subscribe("TypingChannel") as typing,
    ):
        assert not client.extended
        assert client.session_id is None
        [conn] = cable.connections
        assert conn.protocol.dialect.subprotocol == "actioncable-v1-json"
        with pytest.raises(ClientError, match="actioncable-v1-ext-json"):
            await typing.whisper({"typing": True})
        await cable.broadcast("typing", {"n": 1})
        assert await next_message(typing) == {"n": 1}
        proxy.cut()
        assert isinstance(await next_change(typing), Disconnected)
        assert await next_change(typing) == Connected(reconnected=True)
        await cable.broadcast("typing", {"n": 2})
        assert await next_message(typing) == {"n": 2}
        assert typing.pending == 0  # no Recovered: history was not asked for


async def test_extended_false_offers_only_the_plain_protocol() -> None:
    cable = typing_cable()
    async with (
        served(cable) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable", extended=False) as client,
    ):
        assert not client.extended
        [conn] = cable.connections
        assert conn.protocol.dialect.subprotocol == "actioncable-v1-json"


async def test_pongs_keep_a_quiet_client_connected() -> None:
    """With ``pong_timeout`` the server drops extended clients that stay
    silent. The client answers every ping, so it stays, while a raw client
    that says nothing is dropped (``no_pong``): the control that shows the
    pings and the timeout ran meanwhile."""
    cable = typing_cable(ping_interval=0.1, pong_timeout=1.0)
    async with (
        served(cable) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
        client.subscribe("TypingChannel"),
    ):
        await silent_client_dropped(port)
        assert cable.counters["no_pong"] == 1
        assert client.connected
        assert client.reconnects == 0
