"""The Python client against live servers: trio_cable in process (on each
socket transport of serve_cable), a real server process killed and
restarted (each transport again), scripted misbehaving servers, and the
real Rails Action Cable server (tests/rails/config.ru under puma).

Every test runs under a ``fail_after`` cap; no test sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import types
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket

from tests.helpers import LOSS_BOUND, Transport, all_tasks, free_port
from tests.interop.servers import SERVE_CABLE_KINDS, ServerKind, ServerProcess
from trio_cable import Cable, Channel, Request, Unauthorized, serve_cable
from trio_cable.client import (
    CableClient,
    ClientError,
    Connected,
    ConnectionDenied,
    ConnectionLost,
    ConnectionUnauthorized,
    Disconnected,
    Message,
    ServerError,
    ServerUnreachable,
    SubscriptionOverflow,
    SubscriptionRejected,
    SubscriptionTimeout,
    backoff_delay,
    make_identifier,
    open_cable_client,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DOC = ROOT / "docs" / "client.md"


def load_client_doc() -> types.ModuleType:
    """docs/client.md's Python blocks, run in order as one module."""
    module = types.ModuleType("docs_client")
    blocks = re.findall(r"```python\n(.*?)```", CLIENT_DOC.read_text(), re.DOTALL)
    exec(compile("\n".join(blocks), str(CLIENT_DOC), "exec"), module.__dict__)
    return module


@pytest.mark.parametrize(
    "name", sorted(n for n in vars(load_client_doc()) if n.startswith("test_"))
)
async def test_client_doc_examples(name: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        await getattr(load_client_doc(), name)()  # a fresh cable each time


cable = Cable()


@cable.connect
async def authenticate(request: Request) -> str | None:
    if request.query.get("user") == "intruder":
        raise Unauthorized()
    return request.query.get("user")


@cable.channel
class ChatChannel(Channel):
    async def subscribed(self) -> None:
        self.stream_from(f"chat:{self.params['room']}")
        self.transmit({"welcome": self.params["room"], "user": self.current_user})

    async def speak(self, data: dict[str, Any]) -> None:
        self.broadcast(f"chat:{self.params['room']}", {"message": data["message"]})

    async def kick(self) -> None:
        self.connection.close("remote", reconnect=False)

    async def drop(self) -> None:
        self.connection.close("remote", reconnect=True)


@cable.channel
class FeedChannel(Channel):
    async def subscribed(self) -> None:
        self.stream_from(f"feed:{self.params.get('name', 'all')}")


@cable.channel
class GuardedChannel(Channel):
    async def subscribed(self) -> None:
        self.reject()


@pytest.fixture
async def url(nursery: trio.Nursery, transport: Transport) -> str:
    """The cable above, served on ``transport`` for one test."""
    port = await nursery.start(
        partial(serve_cable, transport=transport), cable, "127.0.0.1", 0
    )
    return f"ws://127.0.0.1:{port}/cable"


# -- the task tree -------------------------------------------------------------


def client_tasks() -> list[str]:
    """Tasks that belong to a client: any coroutine of the trio_cable.client
    package (function or method), and trio-websocket readers of client-side
    connections."""
    found = []
    for task in all_tasks():
        coro: Any = task.coro
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            continue
        module = frame.f_globals.get("__name__", "")
        owner = frame.f_locals.get("self")
        if module.startswith("trio_cable.client") or (
            isinstance(owner, trio_websocket.WebSocketConnection) and owner.is_client
        ):
            found.append(task.name)
    return found


# -- against trio_cable in process --------------------------------------------------


async def test_subscribe_perform_iterate(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url + "?user=ana") as client,
            client.subscribe("ChatChannel", room="general") as chat,
        ):
            assert client.connected
            assert chat.identifier == '{"channel":"ChatChannel","room":"general"}'
            assert await chat.receive() == {"welcome": "general", "user": "ana"}
            await chat.perform("speak", {"message": "hi"})
            assert await chat.receive() == {"message": "hi"}
            await cable.broadcast("chat:general", {"message": "from the server"})
            await cable.broadcast("chat:general", {"message": "again"})
            seen = []
            async for message in chat:
                seen.append(message["message"])
                if len(seen) == 2:
                    break
            assert seen == ["from the server", "again"]


async def test_two_subscriptions_share_one_socket(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("ChatChannel", room="a") as a,
            client.subscribe("ChatChannel", room="b") as b,
        ):
            (conn,) = cable.connections
            assert len(conn.subscriptions) == 2
            assert (await a.receive())["welcome"] == "a"
            assert (await b.receive())["welcome"] == "b"
            await b.perform("speak", {"message": "to b"})
            await a.perform("speak", {"message": "to a"})
            assert await a.receive() == {"message": "to a"}
            assert await b.receive() == {"message": "to b"}
            assert a.pending == b.pending == 0


async def test_same_identifier_twice_shares_the_server_subscription(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("FeedChannel", name="x") as one,
            client.subscribe("FeedChannel", name="x") as two,
        ):
            (conn,) = cable.connections
            assert len(conn.subscriptions) == 1
            await cable.broadcast("feed:x", 1)
            assert (await one.receive(), await two.receive()) == (1, 1)
            async with client.subscribe("FeedChannel", name="x") as three:
                assert isinstance(await three.receive_event(), Connected)
            await cable.broadcast("feed:x", 2)  # still subscribed: two remain
            assert await one.receive() == 2


async def test_rejection_is_a_typed_error(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with open_cable_client(url) as client:
            with pytest.raises(SubscriptionRejected) as info:
                async with client.subscribe("GuardedChannel"):
                    pytest.fail("not reached")  # pragma: no cover
            assert info.value.identifier == '{"channel":"GuardedChannel"}'
            assert info.value.reason is None
            with pytest.raises(SubscriptionRejected) as info:
                async with client.subscribe("NoSuchChannel"):
                    pytest.fail("not reached")  # pragma: no cover
            assert info.value.reason == "unknown_channel"
            assert client.connected  # the connection carries on
            async with client.subscribe("FeedChannel"):
                pass


async def test_unauthorized_connection_is_a_typed_error(url: str) -> None:
    with trio.fail_after(LOSS_BOUND), pytest.raises(ConnectionUnauthorized) as info:
        async with open_cable_client(url + "?user=intruder"):
            pytest.fail("not reached")  # pragma: no cover
    assert info.value.reason == "unauthorized"
    assert isinstance(info.value, ConnectionDenied)
    assert isinstance(info.value, ClientError)


async def test_unreachable_server_is_a_typed_error() -> None:
    start = trio.current_time()
    with trio.fail_after(LOSS_BOUND), pytest.raises(ServerUnreachable, match="refused"):
        # A reconnect delay of 10 s: had the client retried, it would have
        # waited at least 5 s (jitter halves it at most).
        async with open_cable_client(
            f"ws://127.0.0.1:{free_port()}/cable", reconnect_delay=10.0
        ):
            pytest.fail("not reached")  # pragma: no cover
    # bound: below that 5 s, with margin for a loaded 2-core machine
    assert trio.current_time() - start < 4.0


async def test_http_refusal_is_a_typed_error(url: str) -> None:
    with trio.fail_after(LOSS_BOUND), pytest.raises(ConnectionDenied) as info:
        async with open_cable_client(url.replace("/cable", "/elsewhere")):
            pytest.fail("not reached")  # pragma: no cover
    assert (info.value.status, info.value.reason) == (404, "http_404")


async def perform_and_wait(url: str, action: str, **options: Any) -> None:
    async with (
        open_cable_client(url, **options) as client,
        client.subscribe("ChatChannel", room="k") as chat,
    ):
        await chat.perform(action)
        await trio.sleep_forever()  # cancelled: the client's error ends the block


async def test_disconnect_without_reconnect_ends_the_client(url: str) -> None:
    with trio.fail_after(LOSS_BOUND), pytest.raises(ConnectionDenied) as info:
        await perform_and_wait(url, "kick")
    assert info.value.reason == "remote"
    assert not isinstance(info.value, ConnectionUnauthorized)
    assert client_tasks() == []


async def test_reconnects_and_resubscribes_and_says_so(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url, reconnect_delay=0.01) as client,
            client.subscribe("ChatChannel", room="r") as chat,
        ):
            events = chat.events()
            assert await anext(events) == Message({"welcome": "r", "user": None})
            assert await anext(events) == Connected(reconnected=False)
            await chat.perform("drop")  # the server closes, reconnect: true
            assert await anext(events) == Disconnected("remote", reconnecting=True)
            assert await anext(events) == Message({"welcome": "r", "user": None})
            assert await anext(events) == Connected(reconnected=True)
            assert client.reconnects == 1
            assert client.disconnect_reason == "remote"
            await chat.perform("speak", {"message": "again"})
            assert await chat.receive() == {"message": "again"}


async def test_reconnect_false_raises_connection_lost(url: str) -> None:
    with trio.fail_after(LOSS_BOUND), pytest.raises(ConnectionLost) as info:
        await perform_and_wait(url, "drop", reconnect=False)
    assert info.value.reason == "remote"


async def test_server_errors_reach_the_subscription(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url) as client,
            client.subscribe("FeedChannel") as feed,
        ):
            assert await feed.receive_event() == Connected(reconnected=False)
            await feed.perform("nope")
            event = await feed.receive_event()
            assert isinstance(event, ServerError)
            assert event.reason == "unknown_action"


async def test_leaving_unsubscribes_and_stops_every_task(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with open_cable_client(url) as client:
            async with client.subscribe("FeedChannel") as feed:
                assert await feed.receive_event() == Connected(reconnected=False)
                running = client_tasks()
                assert len(running) >= 3  # the loop, the re-sender, the reader
            await trio.testing.wait_all_tasks_blocked()
            (conn,) = cable.connections
            assert conn.subscriptions == {}  # the server saw the unsubscribe
            with pytest.raises(ClientError, match="not subscribed"):
                await feed.perform("anything")
        assert client_tasks() == []
        assert not client.connected


async def test_cancelling_the_block_closes_promptly(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        start = trio.current_time()
        with trio.move_on_after(0.2):
            async with (
                # a long close_timeout, so that waiting it out cannot pass
                open_cable_client(url, close_timeout=10.0) as client,
                client.subscribe("FeedChannel") as feed,
            ):
                await feed.receive()  # never comes
        # bound: the 0.2 s, then the close handshake; far below the 10 s
        # close_timeout, with margin for a loaded 2-core machine
        assert trio.current_time() - start < 0.2 + 3.0
        assert client_tasks() == []
        await trio.testing.wait_all_tasks_blocked()
        assert cable.connections == frozenset()  # closed, not abandoned


async def test_overflow_drops_the_oldest(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url, buffer_size=5) as client,
            client.subscribe("FeedChannel", name="fast") as fast,
            client.subscribe("FeedChannel", name="marker") as marker,
        ):
            for i in range(20):
                await cable.broadcast("feed:fast", i)
            await cable.broadcast("feed:marker", "done")
            assert await marker.receive() == "done"  # so all 20 were read
            assert fast.pending == 5
            assert fast.dropped == 16  # 15 messages and the Connected event
            assert [await fast.receive() for _ in range(5)] == [15, 16, 17, 18, 19]


async def test_overflow_error_policy_raises_once(url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url, buffer_size=5, overflow="error") as client,
            client.subscribe("FeedChannel", name="fast") as fast,
            client.subscribe("FeedChannel", name="marker") as marker,
        ):
            for i in range(12):
                await cable.broadcast("feed:fast", i)
            await cable.broadcast("feed:marker", "done")
            assert await marker.receive() == "done"
            with pytest.raises(SubscriptionOverflow) as info:
                await fast.receive()
            assert info.value.dropped == 10  # two overflows dropped 5 each
            assert [await fast.receive() for _ in range(3)] == [9, 10, 11]
            await cable.broadcast("feed:fast", "next")
            assert await fast.receive() == "next"


async def test_server_restart_in_process(
    nursery: trio.Nursery, transport: Transport
) -> None:
    """serve_cable stopped and started on the same port: the client is
    told server_restart, reconnects with backoff and subscribes again."""
    with trio.fail_after(LOSS_BOUND):
        port = free_port()
        scope = trio.CancelScope()

        async def serve(*, task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await serve_cable(
                    cable,
                    "127.0.0.1",
                    port,
                    transport=transport,
                    task_status=task_status,
                )

        await nursery.start(serve)
        async with (
            open_cable_client(
                f"ws://127.0.0.1:{port}/cable", reconnect_delay=0.05
            ) as client,
            client.subscribe("FeedChannel", name="r") as feed,
        ):
            assert await feed.receive_event() == Connected(reconnected=False)
            scope.cancel()
            assert await feed.receive_event() == Disconnected("server_restart", True)
            scope = trio.CancelScope()
            await nursery.start(serve)
            assert await feed.receive_event() == Connected(reconnected=True)
            await cable.broadcast("feed:r", "after")
            assert await feed.receive() == "after"
        scope.cancel()


@pytest.mark.parametrize("kind", SERVE_CABLE_KINDS)
async def test_server_process_killed_and_restarted(
    tmp_path: Path, kind: ServerKind
) -> None:
    """A real server process SIGKILLed (no goodbye) and started again: the
    client notices, reconnects by itself and resubscribes."""
    # a loss bound over two server start-ups on a loaded 2-core machine
    with ServerProcess(kind, tmp_path) as server, trio.fail_after(2 * LOSS_BOUND):
        async with (
            open_cable_client(
                server.url, reconnect_delay=0.05, max_reconnect_delay=0.5
            ) as client,
            client.subscribe("ChatChannel", room="k") as chat,
        ):
            assert (await chat.receive())["welcome"] == "k"
            assert await chat.receive_event() == Connected(reconnected=False)
            server.kill()
            event = await chat.receive_event()
            assert isinstance(event, Disconnected)
            assert event.reconnecting
            server.start()
            await server.wait_ready()
            ready = trio.current_time()
            assert (await chat.receive())["welcome"] == "k"  # subscribed again
            assert await chat.receive_event() == Connected(reconnected=True)
            elapsed = trio.current_time() - ready
            # bound: one capped backoff step (max_reconnect_delay 0.5 s),
            # then a handshake and a subscribe, with margin for a loaded
            # 2-core machine; the cap itself is checked exactly by
            # test_backoff_is_capped_exponential_with_jitter
            assert elapsed < 0.5 + 3.0
            assert await server.broadcast("chat:k", {"n": 1}) == 1
            assert await chat.receive() == {"n": 1}
            assert client.reconnects == 1
        assert client_tasks() == []


# -- against scripted servers ----------------------------------------------------


async def scripted_server(
    nursery: trio.Nursery,
    script: Callable[[trio_websocket.WebSocketConnection, int], Any],
) -> str:
    """A trio-websocket server running ``script(ws, connection_number)``.

    Scripts read what the client sends (see :func:`drain`): trio-websocket
    handles a close frame only after the messages queued before it."""
    count = 0

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        nonlocal count
        count += 1
        ws = await request.accept(subprotocol="actioncable-v1-json")
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await script(ws, count)

    server = await nursery.start(
        trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
    )
    return f"ws://127.0.0.1:{server.port}/cable"


async def drain(ws: trio_websocket.WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def test_stale_connection_is_replaced(nursery: trio.Nursery) -> None:
    connected = trio.Event()

    async def script(ws: trio_websocket.WebSocketConnection, n: int) -> None:
        await ws.send_message('{"type":"welcome"}')
        if n == 2:
            connected.set()
        await drain(ws)  # and send no pings

    url = await scripted_server(nursery, script)
    with trio.fail_after(LOSS_BOUND):
        async with open_cable_client(
            url, stale_timeout=0.2, reconnect_delay=0.01
        ) as client:
            start = trio.current_time()
            await connected.wait()
            await client.wait_connected()
            assert client.disconnect_reason == "stale"
            # bound: stale_timeout 0.2 s + 3 s margin for a loaded 2-core
            # machine, still below the 6 s default it must not fall back to
            assert 0.2 <= trio.current_time() - start < 0.2 + 3.0


async def test_subscribe_is_resent_until_answered(nursery: trio.Nursery) -> None:
    """Like the official client: a server that missed a subscribe (Rails
    may) gets it again every subscribe_retry seconds."""
    received: list[float] = []

    async def script(ws: trio_websocket.WebSocketConnection, n: int) -> None:
        await ws.send_message('{"type":"welcome"}')
        while True:
            frame = json.loads(await ws.get_message())
            received.append(trio.current_time())
            if len(received) == 3:
                reply = {"type": "confirm_subscription", **frame}
                await ws.send_message(json.dumps(reply))

    url = await scripted_server(nursery, script)
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(url, subscribe_retry=0.05) as client,
            client.subscribe("AnyChannel", x=1) as sub,
        ):
            assert sub.confirmed
            assert len(received) == 3
            # Sent subscribe_retry apart; these are the server's receive
            # times, which scheduling can pull a few ms closer together.
            assert received[2] - received[0] >= 2 * 0.05 - 0.01


async def test_no_answer_is_a_subscription_timeout(nursery: trio.Nursery) -> None:
    async def script(ws: trio_websocket.WebSocketConnection, n: int) -> None:
        await ws.send_message('{"type":"welcome"}')
        await drain(ws)

    url = await scripted_server(nursery, script)
    with trio.fail_after(LOSS_BOUND):
        async with open_cable_client(url, subscribe_timeout=0.2) as client:
            with pytest.raises(SubscriptionTimeout):
                async with client.subscribe("Silent"):
                    pytest.fail("not reached")  # pragma: no cover


async def test_no_subprotocol_is_refused(nursery: trio.Nursery) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await trio.sleep_forever()
        assert ws  # pragma: no cover

    server = await nursery.start(
        trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
    )
    with trio.fail_after(LOSS_BOUND), pytest.raises(ConnectionDenied) as info:
        async with open_cable_client(f"ws://127.0.0.1:{server.port}/cable"):
            pytest.fail("not reached")  # pragma: no cover
    assert info.value.reason == "unsupported_protocol"


async def test_wait_for_server_and_give_up_after() -> None:
    url = f"ws://127.0.0.1:{free_port()}/cable"
    start = trio.current_time()
    with (
        trio.fail_after(LOSS_BOUND),
        pytest.raises(ServerUnreachable, match=r"for 0\.3s"),
    ):
        async with open_cable_client(
            url, wait_for_server=True, give_up_after=0.3, reconnect_delay=0.02
        ):
            pytest.fail("not reached")  # pragma: no cover
    # bound: give_up_after 0.3 s + 3 s margin for a loaded 2-core machine
    assert 0.3 <= trio.current_time() - start < 0.3 + 3.0


async def test_give_up_after_counts_from_the_loss(nursery: trio.Nursery) -> None:
    """give_up_after is how long the client has been disconnected, not how
    long ago it started: a connection that lived longer than that and then
    dropped is reconnected."""
    second = trio.Event()

    async def script(ws: trio_websocket.WebSocketConnection, n: int) -> None:
        await ws.send_message('{"type":"welcome"}')
        if n == 1:
            for _ in range(5):  # alive for 0.5 s, longer than give_up_after
                await trio.sleep(0.1)
                await ws.send_message('{"type":"ping","message":0}')
            await ws.aclose()
        else:
            second.set()
            await drain(ws)

    url = await scripted_server(nursery, script)
    with trio.fail_after(5):
        async with open_cable_client(
            url, give_up_after=0.3, reconnect_delay=0.01
        ) as client:
            await second.wait()
            await client.wait_connected()
            assert client.reconnects == 1


def test_backoff_is_capped_exponential_with_jitter() -> None:
    assert [backoff_delay(n, 0.5, 10, lambda: 0.0) for n in range(7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]
    assert backoff_delay(3, 0.5, 10, lambda: 1.0) == 2.0  # jitter: down to half
    assert backoff_delay(10_000, 0.5, 10, lambda: 0.0) == 10.0


def test_identifiers_are_what_the_official_client_sends() -> None:
    assert make_identifier("Chat", {"room": "é", "n": 1}) == (
        '{"channel":"Chat","room":"é","n":1}'
    )


def test_client_names_live_under_trio_cable_client() -> None:
    """The top level is the server's API: no client class shares it (the
    server has its own Subscription; Message and Connected would be
    ambiguous)."""
    import trio_cable
    import trio_cable.client

    for name in trio_cable.client.__all__:
        assert hasattr(trio_cable.client, name), name
        assert not hasattr(trio_cable, name), name
    for error in (ClientError, ConnectionDenied, SubscriptionRejected):
        assert issubclass(error, trio_cable.CableError)
        # Defined in the one family (_errors), named where users import them.
        assert error.__module__ == "trio_cable.client"


def test_bad_urls_are_refused_early() -> None:
    with pytest.raises(ValueError, match="ws://"):
        CableClient("http://example.com/cable")


# -- against the real Rails Action Cable server --------------------------------------


def rails_available() -> bool:
    if shutil.which("puma") is None or shutil.which("ruby") is None:
        return False
    probe = subprocess.run(
        ["ruby", "-e", 'require "action_cable"'], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.fixture
async def rails_url(tmp_path: Path) -> AsyncIterator[str]:
    if not rails_available():
        if os.environ.get("CI") == "true":
            pytest.fail("puma and ruby-actioncable are required under CI")
        pytest.skip("puma or ruby-actioncable (Debian packages) not installed")
    port = free_port()
    log = (tmp_path / "puma.log").open("wb")
    process = await trio.lowlevel.open_process(
        ["puma", "--bind", f"tcp://127.0.0.1:{port}", "config.ru"],
        cwd=ROOT / "tests" / "rails",
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + LOSS_BOUND  # Ruby boots slowly when loaded
        while True:  # polling another process
            assert process.poll() is None, (tmp_path / "puma.log").read_text()
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                assert time.monotonic() < deadline, "puma did not start"
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            break
        yield f"ws://127.0.0.1:{port}/cable"
    finally:
        process.kill()
        await process.wait()
        log.close()


async def test_rails_subscribe_perform_receive(rails_url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        async with (
            open_cable_client(rails_url + "?user=ana") as client,
            client.subscribe("ChatChannel", room="ruby") as chat,
            client.subscribe("EchoChannel") as echo,
        ):
            assert await chat.receive() == {"welcome": "ruby", "user": "ana"}
            await chat.perform("speak", {"message": "hi"})
            assert await chat.receive() == {
                "message": "hi",
                "room": "ruby",
                "user": "ana",
            }
            await echo.send({"x": [1, 2]})  # no action: Rails' receive
            assert await echo.receive() == {"echo": {"x": [1, 2]}}


async def test_rails_refusals_are_typed(rails_url: str) -> None:
    with trio.fail_after(LOSS_BOUND):
        # The rejection under the default subscribe_timeout (10 s): a loaded
        # machine's Ruby may take longer than a short one to answer.
        async with open_cable_client(rails_url) as client:
            with pytest.raises(SubscriptionRejected):
                async with client.subscribe("ChatChannel", room="secret"):
                    pytest.fail("not reached")  # pragma: no cover
        async with open_cable_client(rails_url, subscribe_timeout=0.6) as client:
            # Rails says nothing about unknown channels
            with pytest.raises(SubscriptionTimeout):
                async with client.subscribe("NoSuchChannel"):
                    pytest.fail("not reached")  # pragma: no cover
        with pytest.raises(ConnectionUnauthorized):
            async with open_cable_client(rails_url + "?user=intruder"):
                pytest.fail("not reached")  # pragma: no cover
