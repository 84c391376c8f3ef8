"""Session resumption with AnyCable's own client, ``@anycable/web`` in Node.

The client's TCP connection is cut by a proxy in the test (the server is
untouched); the client reconnects with ``?sid=``. Within ``session_ttl``
its session is restored: no second connect-hook call, no second
``subscribed()``, ``restored_ids`` naming its subscription, and numbered
broadcasts made across the cut arrive exactly once, in order. After the
TTL it gets a fresh session (and re-subscribes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

from tests.helpers import LOSS_BOUND, SERVERS, Server, served_on, tcp_proxy, wait_until
from tests.interop.nodeclient import (
    ANYCABLE_DRIVER,
    NodeClient,
    open_ac_client,
)
from trio_cable import Cable, Channel

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]


def counting_cable(**options: Any) -> tuple[Cable, Counter[str]]:
    calls: Counter[str] = Counter()

    async def connect(request: Any) -> str:
        calls["connect"] += 1
        return "ann"

    cable = Cable(connect=connect, history=["feed"], **options)

    @cable.channel
    class FeedChannel(Channel):
        async def subscribed(self) -> None:
            calls["subscribed"] += 1
            self.stream_from("feed")

        async def unsubscribed(self) -> None:
            calls["unsubscribed"] += 1

    return cable, calls


async def subscribe(client: NodeClient, url: str, reconnect_delay: int) -> None:
    await client.send({"cmd": "connect", "url": url, "reconnectDelay": reconnect_delay})
    await client.expect({"event": "cable_connect", "restored": False}, LOSS_BOUND)
    await client.send({"cmd": "subscribe", "key": "f", "channel": "FeedChannel"})
    await client.expect({"event": "subscribed", "key": "f"}, LOSS_BOUND)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_cut_client_is_restored_and_misses_nothing(server: Server) -> None:
    cable, calls = counting_cable()
    async with (
        served_on(cable, server) as port,
        tcp_proxy(port) as proxy,
        open_ac_client(driver=ANYCABLE_DRIVER) as client,
    ):
        await subscribe(client, f"ws://127.0.0.1:{proxy.port}/cable", 300)
        [first] = cable.connections
        numbers: list[int] = []

        async def broadcaster() -> None:
            start = trio.current_time()
            for n in range(200):
                if n == 100:
                    proxy.cut()
                await cable.broadcast("feed", {"n": n})
                # Pacing, not synchronisation: about 100 per second.
                await trio.sleep_until(start + (n + 1) / 100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(broadcaster)
            while len(numbers) < 200:
                got = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
                numbers.append(got["data"]["n"])
        assert numbers == list(range(200))
        await client.assert_no_event({"event": "message"}, within=0.5)

        connected = [e for e in client.history if e["event"] == "cable_connect"]
        assert connected[-1] == {
            "event": "cable_connect",
            "reconnect": True,
            "restored": True,
        }
        # The channel was told restored, not re-subscribed.
        channel_events = [e for e in client.history if e["event"] == "connect"]
        assert channel_events[-1]["restored"] is True
        assert calls == {"connect": 1, "subscribed": 1}
        assert cable.counters["sessions_restored"] == 1
        [second] = cable.connections
        assert second is not first
        assert second.identity == "ann"
        assert list(second.subscriptions) == ['{"channel":"FeedChannel"}']
        assert proxy.cuts == 1
        assert proxy.accepted == 2
    # The restored session dropped as the client left; it ended as the
    # cable stopped: one unsubscribed() in all.
    assert calls["unsubscribed"] == 1


async def test_a_client_back_after_the_ttl_gets_a_fresh_session() -> None:
    cable, calls = counting_cable(session_ttl=0.2)
    async with (
        served_on(cable, "direct") as port,
        tcp_proxy(port) as proxy,
        open_ac_client(driver=ANYCABLE_DRIVER) as client,
    ):
        # It comes back 1.5 s after the cut: the session is gone by then.
        await subscribe(client, f"ws://127.0.0.1:{proxy.port}/cable", 1500)
        proxy.cut()
        await wait_until(lambda: calls["unsubscribed"] == 1)
        connected = await client.expect(
            {"event": "cable_connect", "reconnect": True}, LOSS_BOUND
        )
        assert connected["restored"] is False
        await wait_until(lambda: calls["subscribed"] == 2)
        assert calls["connect"] == 2
        await cable.broadcast("feed", {"n": 1})
        got = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
        assert got["data"] == {"n": 1}
        opened = [e for e in client.history if e["event"] == "socket_open"]
        assert "sid=" in opened[-1]["url"]  # it asked; it was not restored
