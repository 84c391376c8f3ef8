"""AnyCable's own client, ``@anycable/web`` 1.1 in Node, against trio_cable.

It speaks ``actioncable-v1-ext-json`` (the extended protocol): the server
selects it, welcomes with a session id, positions broadcasts to streams
with history, and replays what a client missed when its connection was
cut, with no gap and no duplicate. A handshake that offers only what the
server does not speak is refused in words on every transport. Its
``$pubsub`` streams (``streamFromSigned``, ``streamFrom``) work as with
AnyCable, with history and whispers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.helpers import (
    LOSS_BOUND,
    ProxyCut,
    RawClient,
    TcpProxy,
    all_once_across_a_drop,
    command,
    served,
    tcp_proxy,
)
from tests.interop.nodeclient import (
    ANYCABLE_DRIVER,
    NodeClient,
    open_ac_client,
)
from tests.interop.servers import SERVER_KINDS, ServerKind, ServerProcess
from trio_cable import Cable, Channel
from trio_cable.asgi import CableApp

EXT = "actioncable-v1-ext-json"
PLAIN = "actioncable-v1-json"

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("_node")]


def feed_cable(**options: Any) -> Cable:
    cable = Cable(history=["feed:*"], **options)

    @cable.channel
    class FeedChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from(f"feed:{self.params['room']}")

    return cable


@asynccontextmanager
async def anycable() -> AsyncIterator[NodeClient]:
    async with open_ac_client(driver=ANYCABLE_DRIVER) as client:
        yield client


@asynccontextmanager
async def served_on(cable: Cable, kind: str) -> AsyncIterator[int]:
    """The cable on one of the three server kinds, in this process."""
    if kind != "hypercorn":
        async with served(cable, kind) as port:  # type: ignore[arg-type]
            yield port
        return
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, CableApp(cable), config)
        yield int(binds[0].rsplit(":", 1)[1])
        nursery.cancel_scope.cancel()


async def test_ext_is_selected_welcomed_with_a_sid_and_positioned() -> None:
    cable = feed_cable()
    async with served(cable) as port, anycable() as client:
        url = f"ws://127.0.0.1:{port}/cable"
        options = {"protocolOptions": {"pongs": True}}
        await client.send({"cmd": "connect", "url": url, "options": options})
        opened = await client.expect({"event": "socket_open"})
        assert opened["protocol"] == EXT
        await client.expect({"event": "cable_connect", "restored": False})
        [conn] = cable.connections
        assert conn.sid
        assert conn.protocol.dialect.subprotocol == EXT
        params = {"room": "r1"}
        await client.send(
            {"cmd": "subscribe", "key": "f", "channel": "FeedChannel", "params": params}
        )
        await client.expect({"event": "subscribed", "key": "f"})
        await cable.broadcast("feed:r1", {"n": 1})
        got = await client.expect({"event": "message", "key": "f"})
        assert got["data"] == {"n": 1}
        assert got["meta"] == {
            "stream": "feed:r1",
            "epoch": cable.hub.history.epoch,  # type: ignore[union-attr]
            "offset": 1,
        }
        # (The first subscribe asked for history since the client started,
        # and confirm_history came right behind confirm_subscription: in one
        # TCP read, @anycable/core 1.1.7 loses that history_received event.)
        await client.assert_no_event({"event": "uncaught"}, within=0.2)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_ext_only_offer_to_a_server_without_ext_is_refused(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The client is told (HTTP 400, which it reports) instead of being
    accepted on a socket it must abandon; the server logs one line."""
    cable = feed_cable(extended_protocol=False)
    caplog.set_level(logging.WARNING, "trio_cable.server")
    async with served_on(cable, kind) as port, anycable() as client:
        url = f"ws://127.0.0.1:{port}/cable"
        await client.send({"cmd": "connect", "url": url})
        error = await client.expect({"event": "socket_error"})
        assert "400" in error["error"]
        await client.assert_no_event({"event": "socket_open"}, within=0.2)
        refusals = [r for r in caplog.records if "refused a handshake" in r.message]
        assert refusals, caplog.text
        assert f"offering only {EXT}" in refusals[0].message
        assert cable.counters["subprotocol_refused"] == len(refusals)
        # Offered beside the plain one, ext is declined and plain chosen.
        raw = await RawClient.open(port)
        head = await raw.handshake(port, protocol=f"{EXT}, {PLAIN}")
        assert f"sec-websocket-protocol: {PLAIN}".encode() in head.lower()
        await raw.aclose()


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_both_offered_the_best_chosen_and_unknown_refused(kind: str) -> None:
    cable = feed_cable()
    async with served_on(cable, kind) as port:
        raw = await RawClient.open(port)
        head = await raw.handshake(port, protocol=f"{PLAIN}, {EXT}")
        assert f"sec-websocket-protocol: {EXT}".encode() in head.lower()
        await raw.aclose()
        raw = await RawClient.open(port)
        head = await raw.handshake(port, protocol="actioncable-v9-json")
        assert head.startswith(b"HTTP/1.1 400"), head
        said = (
            b"unsupported subprotocol: this server speaks "
            b"actioncable-v1-ext-json, actioncable-v1-json"
        )
        with trio.fail_after(LOSS_BOUND):  # the body, whatever its framing
            while said not in raw.buffer:
                chunk = await raw.stream.receive_some()
                assert chunk, bytes(raw.buffer)
                raw.buffer += chunk
        await raw.aclose()


# -- recovery across a cut connection -------------------------------------------


async def received_numbers(client: NodeClient, key: str, count: int) -> list[int]:
    numbers = []
    while len(numbers) < count:
        event = await client.expect({"event": "message", "key": key}, LOSS_BOUND)
        numbers.append(event["data"]["n"])
    return numbers


async def all_once_across_the_cut(
    server: ServerProcess, client: NodeClient, proxy: TcpProxy, stream: str, key: str
) -> None:
    """300 numbered broadcasts at about 100/s over HTTP while ``proxy`` cuts
    the client's connection midway: every one arrives at subscription
    ``key`` exactly once, in order (the shared check of every client,
    :func:`tests.helpers.all_once_across_a_drop`)."""

    async def received(count: int) -> list[int]:
        return await received_numbers(client, key, count)

    await all_once_across_a_drop(server.broadcast, stream, received, ProxyCut(proxy))


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_300_broadcasts_exactly_once_in_order_across_a_cut(
    kind: ServerKind, tmp_path: Path
) -> None:
    """@anycable/web subscribed through a TCP proxy; 300 numbered broadcasts
    at about 100/s; the proxy cuts the client's connection midway (the
    server is untouched). The client reconnects, asks for what it missed
    from its last epoch/offset, and gets each broadcast exactly once, in
    order, whichever were live and whichever were replayed."""
    room = uuid.uuid4().hex[:8]
    with ServerProcess(kind, tmp_path) as server:
        await server.wait_ready()
        async with tcp_proxy(server.port) as proxy, anycable() as client:
            url = f"ws://127.0.0.1:{proxy.port}/cable"
            await client.send({"cmd": "connect", "url": url, "reconnectDelay": 300})
            await client.send(
                {
                    "cmd": "subscribe",
                    "key": "f",
                    "channel": "FeedChannel",
                    "params": {"room": room},
                }
            )
            await client.expect({"event": "subscribed", "key": "f"}, LOSS_BOUND)
            await all_once_across_the_cut(server, client, proxy, f"feed:{room}", "f")
            assert proxy.cuts == 1
            assert proxy.accepted == 2
            reopened = [e for e in client.history if e["event"] == "socket_open"]
            assert len(reopened) == 2
            assert "sid=" in reopened[1]["url"]  # it tried to resume
            await client.assert_no_event({"event": "uncaught"}, within=0)


async def test_history_gone_after_a_restart_is_reported(tmp_path: Path) -> None:
    """A restarted server has a new epoch: the client's positions mean
    nothing there, and it is told so (``history_not_found``)."""
    room = uuid.uuid4().hex[:8]
    with ServerProcess("direct", tmp_path) as server:
        await server.wait_ready()
        async with anycable() as client:
            await client.send(
                {"cmd": "connect", "url": server.url, "reconnectDelay": 300}
            )
            params = {"room": room}
            await client.send(
                {
                    "cmd": "subscribe",
                    "key": "f",
                    "channel": "FeedChannel",
                    "params": params,
                }
            )
            await client.expect({"event": "subscribed", "key": "f"}, LOSS_BOUND)
            await server.broadcast(f"feed:{room}", {"n": 0})
            await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
            server.kill()
            server.start()
            await server.wait_ready()
            await client.expect(
                {"event": "info", "key": "f", "type": "history_not_found"}, LOSS_BOUND
            )
            # Live delivery goes on after the rejection (the subscription
            # was confirmed before the history was asked for).
            await server.broadcast(f"feed:{room}", {"n": 1})
            got = await client.expect({"event": "message", "key": "f"}, LOSS_BOUND)
            assert got["data"] == {"n": 1}
            assert got["meta"]["offset"] == 1  # a new epoch counts afresh


async def test_whispers_between_two_anycable_clients() -> None:
    """``channel.whisper()`` of @anycable/web reaches the other client and
    not the sender (once a broadcast made after it has reached both)."""
    cable = Cable()

    @cable.channel
    class TypingChannel(Channel):
        async def subscribed(self) -> None:
            self.stream_from("typing", whisper=True)

    async with served(cable) as port, anycable() as ann, anycable() as bob:
        url = f"ws://127.0.0.1:{port}/cable"
        for client in (ann, bob):
            await client.send({"cmd": "connect", "url": url})
            await client.send(
                {"cmd": "subscribe", "key": "t", "channel": "TypingChannel"}
            )
            await client.expect({"event": "subscribed", "key": "t"})
        await ann.send({"cmd": "whisper", "key": "t", "data": {"typing": "ann"}})
        got = await bob.expect({"event": "message", "key": "t"})
        assert got["data"] == {"typing": "ann"}
        await cable.broadcast("typing", {"marker": 1})
        first = await ann.expect({"event": "message", "key": "t"})
        assert first["data"] == {"marker": 1}  # its own whisper never came
        await bob.expect({"event": "message", "key": "t"})


# -- $pubsub: streams without a channel ------------------------------------------

PUBSUB_SECRET = "interop streams secret"


@pytest.mark.parametrize("public", [False, True], ids=["public-off", "public-on"])
@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_pubsub_streams_signed_and_public(
    kind: ServerKind, public: bool, tmp_path: Path
) -> None:
    """``cable.streamFromSigned(signed)`` receives what is broadcast over
    HTTP to the server; ``cable.streamFrom(name)`` only when the server
    has public streams on; a tampered or forged signature is rejected."""
    room = uuid.uuid4().hex[:8]
    env = {"CHAT_APP_STREAMS_SECRET": PUBSUB_SECRET}
    if public:
        env["CHAT_APP_PUBLIC_STREAMS"] = "1"
    signed = Cable(streams_secret=PUBSUB_SECRET).signed_stream_name(f"news:{room}")
    encoded, digest = signed.split("--")
    tampered = f"{encoded}--{digest[:-1]}{'0' if digest[-1] != '0' else '1'}"
    forged = Cable(streams_secret="guessed").signed_stream_name(f"news:{room}")
    with ServerProcess(kind, tmp_path, env=env) as server:
        await server.wait_ready()
        async with anycable() as client:
            await client.send({"cmd": "connect", "url": server.url})
            streams = [
                ("stream_signed", "signed", signed),
                ("stream", "public", f"open:{room}"),
                ("stream_signed", "tampered", tampered),
                ("stream_signed", "forged", forged),
            ]
            for cmd, key, name in streams:
                await client.send({"cmd": cmd, "key": key, "name": name})
            await client.expect({"event": "subscribed", "key": "signed"}, LOSS_BOUND)
            for key in ("tampered", "forged"):
                await client.expect({"event": "rejected", "key": key}, LOSS_BOUND)
            outcome = "subscribed" if public else "rejected"
            await client.expect({"event": outcome, "key": "public"}, LOSS_BOUND)
            assert await server.broadcast(f"news:{room}", {"n": 1}) == 1
            got = await client.expect({"event": "message", "key": "signed"})
            assert got["data"] == {"n": 1}
            delivered = await server.broadcast(f"open:{room}", {"n": 2})
            assert delivered == int(public)
            if public:
                got = await client.expect({"event": "message", "key": "public"})
                assert got["data"] == {"n": 2}
            # The reason is on the wire (@anycable/core drops it).
            raw = await RawClient.connect(server.port, welcome=True)
            identifier = json.dumps(
                {"channel": "$pubsub", "signed_stream_name": tampered}
            )
            await raw.send_text(command("subscribe", identifier))
            frame = await raw.receive()
            assert frame is not None
            assert frame["type"] == "reject_subscription"
            assert frame["reason"] == "invalid_signature"
            await raw.aclose()
            await client.assert_no_event({"event": "message"}, within=0.2)
            await client.assert_no_event({"event": "uncaught"}, within=0)


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_signed_pubsub_stream_recovers_across_a_cut(
    kind: ServerKind, tmp_path: Path
) -> None:
    """``streamFromSigned`` to a stream with history (``feed:*``) recovers
    like a channel's: 300 numbered broadcasts at about 100/s, the client's
    connection cut midway by the proxy, each received once, in order."""
    room = uuid.uuid4().hex[:8]
    env = {"CHAT_APP_STREAMS_SECRET": PUBSUB_SECRET}
    signed = Cable(streams_secret=PUBSUB_SECRET).signed_stream_name(f"feed:{room}")
    with ServerProcess(kind, tmp_path, env=env) as server:
        await server.wait_ready()
        async with tcp_proxy(server.port) as proxy, anycable() as client:
            url = f"ws://127.0.0.1:{proxy.port}/cable"
            await client.send({"cmd": "connect", "url": url, "reconnectDelay": 300})
            await client.send({"cmd": "stream_signed", "key": "p", "name": signed})
            await client.expect({"event": "subscribed", "key": "p"}, LOSS_BOUND)
            await all_once_across_the_cut(server, client, proxy, f"feed:{room}", "p")
            assert (proxy.cuts, proxy.accepted) == (1, 2)
            await client.assert_no_event({"event": "uncaught"}, within=0)


async def test_whispers_on_a_public_pubsub_stream() -> None:
    """Public ``$pubsub`` streams allow whispers (as in AnyCable): from
    ``cable.streamFrom(name).whisper()`` to the other client, not the sender."""
    cable = Cable(public_streams=True)
    async with served(cable) as port, anycable() as ann, anycable() as bob:
        url = f"ws://127.0.0.1:{port}/cable"
        for client in (ann, bob):
            await client.send({"cmd": "connect", "url": url})
            await client.send({"cmd": "stream", "key": "t", "name": "typing:1"})
            await client.expect({"event": "subscribed", "key": "t"})
        await ann.send({"cmd": "whisper", "key": "t", "data": {"typing": "ann"}})
        got = await bob.expect({"event": "message", "key": "t"})
        assert got["data"] == {"typing": "ann"}
        await cable.broadcast("typing:1", {"marker": 1})
        first = await ann.expect({"event": "message", "key": "t"})
        assert first["data"] == {"marker": 1}  # its own whisper never came
        await bob.expect({"event": "message", "key": "t"})
