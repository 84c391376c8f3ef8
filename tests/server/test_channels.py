"""Channels, actions, streams and connections, through the in-memory client."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
import trio
import trio.testing

from tests.helpers import wait_until
from trio_cable import Cable, Channel, ConnectionRejected, Unauthorized
from trio_cable.testing import (
    TestClient,
    cable_test_client,
    capture_broadcasts,
    identifier_for,
)

IDENT = identifier_for("RoomChannel", room="a")


def make_cable(**options: Any) -> tuple[Cable, dict[str, Any]]:
    cable = Cable(**options)
    log: dict[str, Any] = {
        "subscribed": [],
        "unsubscribed": [],
        "threads": [],
        "order": [],
        "gate": trio.Event(),
    }

    @cable.channel
    class RoomChannel(Channel):
        async def subscribed(self) -> None:
            log["subscribed"].append(self.identifier)
            if self.params.get("room") == "closed":
                self.transmit({"never": "seen"})
                self.reject()
                return
            if self.params.get("room") == "boom":
                raise RuntimeError("subscribed failed")
            self.stream_from(f"room:{self.params['room']}")
            self.transmit({"welcome": self.params["room"]})

        async def unsubscribed(self) -> None:
            log["unsubscribed"].append(
                (
                    self.identifier,
                    set(self.streams),
                    cable.hub.subscribers(f"room:{self.params['room']}"),
                )
            )

        async def speak(self, data: dict[str, Any]) -> None:
            self.broadcast(f"room:{self.params['room']}", {"said": data["text"]})

        async def record(self, data: dict[str, Any]) -> None:
            if data.get("wait"):
                await log["gate"].wait()
            log["order"].append(data["n"])
            self.transmit({"done": data["n"]})

        def blocking(self, data: dict[str, Any]) -> None:
            log["threads"].append(threading.current_thread() is threading.main_thread())
            self.transmit({"from_thread": data["n"]})
            self.broadcast(f"room:{self.params['room']}", {"thread_broadcast": True})

        async def noargs(self) -> None:
            self.transmit({"noargs": True})

        async def receive(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": data})

        async def fail(self, data: dict[str, Any]) -> None:
            raise ValueError("action failed")

        async def whoami(self, data: dict[str, Any]) -> None:
            self.transmit(
                {
                    "user": self.current_user,
                    "authenticated": self.authenticated,
                    "cookie": self.request.cookies.get("sid"),
                    "header": self.request.headers.get("x-app"),
                    "query": self.request.query.get("q"),
                    "path": self.scope["path"],
                    "channel": self.channel_name,
                }
            )

        async def leave(self, data: dict[str, Any]) -> None:
            self.stop_stream_from(f"room:{self.params['room']}")
            self.transmit({"left": True})

        async def join(self, data: dict[str, Any]) -> None:
            self.stream_from(data["stream"])
            self.transmit({"joined": data["stream"]})

        limit = 5  # a non-callable attribute

        @property
        def prop(self) -> int:
            return 1

    return cable, log


async def drain(ws: TestClient) -> list[dict[str, Any]]:
    """Every frame until the server closes the connection."""
    frames = []
    while True:
        try:
            frames.append(await ws.receive())
        except trio.EndOfChannel:
            return frames


async def subscribe(ws: TestClient, room: str = "a") -> dict[str, Any]:
    return await ws.subscribe("RoomChannel", room=room)


async def test_transmit_in_subscribed_arrives_just_before_confirm() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await ws.send_command("subscribe", IDENT)
        first = await ws.receive()
        second = await ws.receive()
    assert first == {"identifier": IDENT, "message": {"welcome": "a"}}
    assert second == {"identifier": IDENT, "type": "confirm_subscription"}


async def test_reject_discards_held_messages_and_skips_unsubscribed() -> None:
    cable, log = make_cable()
    async with cable_test_client(cable) as ws:
        ident = identifier_for("RoomChannel", room="closed")
        await ws.send_command("subscribe", ident)
        assert await ws.receive() == {
            "identifier": ident,
            "type": "reject_subscription",
        }
        await ws.perform("RoomChannel", "speak", {"text": "x"}, room="closed")
        assert (await ws.receive())["reason"] == "not_subscribed"
        assert ws.connection.subscriptions == {}
    assert log["unsubscribed"] == []


async def test_commands_queued_behind_a_rejected_subscribe_are_answered() -> None:
    cable, _ = make_cable()
    gate = trio.Event()

    @cable.channel
    class SlowNo(Channel):
        async def subscribed(self) -> None:
            await gate.wait()
            self.reject()

        async def act(self) -> None:
            pass  # pragma: no cover

    ident = identifier_for("SlowNo")
    async with cable_test_client(cable) as ws:
        await ws.send_command("subscribe", ident)
        await ws.send_command("subscribe", ident)  # the client's 500 ms retry
        await ws.send_command("message", ident, {"action": "act"})
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        frames = [await ws.receive() for _ in range(2)]
    # One rejection for the subscription, however many subscribes it got.
    assert [f.get("type") for f in frames] == ["reject_subscription", "error"]
    assert frames[1]["reason"] == "not_subscribed"


async def test_failing_subscribed_rejects_and_connection_lives_on() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        assert (await subscribe(ws, "boom"))["type"] == "reject_subscription"
        assert (await subscribe(ws, "a"))["type"] == "confirm_subscription"


async def test_duplicate_subscribe_is_confirmed_once_without_second_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, log = make_cable()
    async with cable_test_client(cable) as ws:
        for _ in range(3):
            await ws.send_command("subscribe", IDENT)
        frames = [await ws.receive() for _ in range(2)]
        assert [f.get("type") for f in frames].count("confirm_subscription") == 1
        await ws.send_command("subscribe", IDENT)  # a duplicate once confirmed
        assert log["subscribed"] == [IDENT]
        assert cable.hub.subscribers("room:a") == 1
        await ws.perform("RoomChannel", "speak", {"text": "once"}, room="a")
        assert (await ws.receive())["message"] == {"said": "once"}
        # On the mock clock the window opens only once every task is
        # blocked: a second confirmation or delivery, however late, would
        # be in it.
        with trio.move_on_after(0.2):
            extra = await ws.receive()
            pytest.fail(f"a second confirmation or delivery: {extra}")


async def test_identifier_is_echoed_verbatim_whatever_its_key_order() -> None:
    cable, _ = make_cable()
    odd = '{ "room" : "a",  "channel" : "RoomChannel" }'
    async with cable_test_client(cable) as ws:
        await ws.send_command("subscribe", odd)
        frames = [await ws.receive(), await ws.receive()]
    assert all(f["identifier"] == odd for f in frames)


async def test_two_subscriptions_of_one_channel_are_independent() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        await cable.broadcast("room:b", {"to": "b"})
        frame = await ws.receive_matching(lambda f: "to" in f.get("message", {}))
        assert frame["identifier"] == identifier_for("RoomChannel", room="b")
        await ws.unsubscribe("RoomChannel", room="b")
        await trio.testing.wait_all_tasks_blocked()
        assert await cable.broadcast("room:b", {"to": "b"}) == 0
        assert await cable.broadcast("room:a", {"to": "a"}) == 1


async def test_actions_plain_def_runs_in_a_thread_and_async_in_the_loop() -> None:
    cable, log = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.perform("RoomChannel", "blocking", {"n": 1}, room="a")
        got = [await ws.receive(), await ws.receive(), await ws.receive()]
        messages = [f["message"] for f in got]
        assert {"from_thread": 1} in messages
        assert {"thread_broadcast": True} in messages
        assert log["threads"] == [False]


async def test_receive_is_the_default_action_and_noarg_actions_work() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.receive()  # welcome message
        await ws.send_command("message", IDENT, {"text": "plain send"})
        assert (await ws.receive())["message"] == {"echo": {"text": "plain send"}}
        await ws.perform("RoomChannel", "noargs", room="a")
        assert (await ws.receive())["message"] == {"noargs": True}


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("_private", "invalid_action"),
        ("__init__", "invalid_action"),
        ("subscribed", "invalid_action"),
        ("unsubscribed", "invalid_action"),
        ("transmit", "invalid_action"),
        ("send", "invalid_action"),
        ("broadcast", "invalid_action"),
        ("reject", "invalid_action"),
        ("stream_from", "invalid_action"),
        ("stop_stream_from", "invalid_action"),
        ("stop_all_streams", "invalid_action"),
        ("params", "invalid_action"),
        ("connection", "invalid_action"),
        ("channel_name", "invalid_action"),
        ("limit", "unknown_action"),
        ("prop", "unknown_action"),
        ("missing", "unknown_action"),
    ],
)
async def test_refused_actions(action: str, reason: str) -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.receive()
        await ws.perform("RoomChannel", action, room="a")
        error = await ws.receive()
        assert error["type"] == "error"
        assert error["reason"] == reason
        assert error["identifier"] == ""
        assert error["about"] == IDENT
        # the subscription still works
        await ws.perform("RoomChannel", "speak", {"text": "still here"}, room="a")
        assert (await ws.receive())["message"] == {"said": "still here"}


async def test_errors_leave_connection_and_other_subscriptions_usable() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        bad = [
            ("not json", "invalid_json"),
            ('{"command":"dance","identifier":"{}"}', "unknown_command"),
            (
                '{"command":"message","identifier":"{\\"channel\\":\\"X\\"}",'
                '"data":"{}"}',
                "not_subscribed",
            ),
            ('{"command":"subscribe","identifier":"[]"}', "invalid_request"),
            (b"\x00\x01binary", "invalid_request"),
        ]
        for raw, reason in bad:
            await ws.send_raw(raw)
            frame = await ws.receive_matching(lambda f: f.get("type") == "error")
            assert frame["reason"] == reason
        await ws.perform("RoomChannel", "fail", room="a")
        frame = await ws.receive_matching(lambda f: f.get("type") == "error")
        assert frame["reason"] == "server_error"
        await ws.unsubscribe("RoomChannel", room="zzz")
        frame = await ws.receive_matching(lambda f: f.get("type") == "error")
        assert frame["reason"] == "not_subscribed"
        # unknown channel: rejected with a reason, not silence
        rejected = await ws.subscribe("NoSuchChannel", x=1)
        assert rejected["type"] == "reject_subscription"
        assert rejected["reason"] == "unknown_channel"
        for room in ("a", "b"):
            await ws.perform("RoomChannel", "speak", {"text": room}, room=room)
            frame = await ws.receive_matching(lambda f: "said" in f.get("message", {}))
            assert frame["message"] == {"said": room}


async def test_commands_of_one_subscription_run_in_order() -> None:
    cable, log = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.perform("RoomChannel", "record", {"n": 1, "wait": True}, room="a")
        for n in range(2, 6):
            await ws.perform("RoomChannel", "record", {"n": n}, room="a")
        await trio.testing.wait_all_tasks_blocked()
        assert log["order"] == []  # the rest queue behind the slow first one
        log["gate"].set()
        done = [
            (await ws.receive_matching(lambda f: "done" in f.get("message", {})))
            for _ in range(5)
        ]
        assert [f["message"]["done"] for f in done] == [1, 2, 3, 4, 5]


async def test_slow_action_does_not_delay_another_subscription_or_pings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, log = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        await ws.perform("RoomChannel", "record", {"n": 1, "wait": True}, room="a")
        await ws.perform("RoomChannel", "record", {"n": 2}, room="b")
        frame = await ws.receive_matching(lambda f: "done" in f.get("message", {}))
        assert frame["message"] == {"done": 2}
        start = trio.current_time()
        ping = await ws.receive_matching(lambda f: f.get("type") == "ping")
        assert trio.current_time() - start <= cable.ping_interval
        assert isinstance(ping["message"], int)
        log["gate"].set()
        frame = await ws.receive_matching(lambda f: "done" in f.get("message", {}))
        assert frame["message"] == {"done": 1}


async def test_pings_every_three_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        times = []
        for _ in range(3):
            frame = await ws.receive(pings=True)
            assert frame["type"] == "ping"
            times.append(trio.current_time())
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [3, 3]


async def test_unsubscribed_runs_after_streams_are_left_on_every_ending() -> None:
    cable, log = make_cable()
    async with cable.running(), cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await ws.unsubscribe("RoomChannel", room="a")
        await trio.testing.wait_all_tasks_blocked()
        assert log["unsubscribed"] == [(IDENT, set(), 0)]
        await subscribe(ws, "b")  # ended by the client closing its socket
    b = identifier_for("RoomChannel", room="b")
    assert log["unsubscribed"][1] == (b, set(), 0)
    assert cable.hub.statistics().streams == 0
    assert cable.connections == frozenset()


async def test_server_shutdown_sends_server_restart_and_runs_hooks() -> None:
    cable, log = make_cable()
    frames: list[dict[str, Any]] = []
    async with cable.running(), cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await ws.receive()
        await cable.shutdown()
        frames = await drain(ws)
    assert frames == [
        {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    ]
    assert len(log["unsubscribed"]) == 1


async def test_a_server_side_close_ends_the_connection_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A queued socket (the in-memory one here) runs the whole close in
    the writer; the connection then ends its reader itself, at once, not
    close_timeout later for want of a client that says anything more."""
    cable, log = make_cable(close_timeout=10.0)
    async with cable.running(), cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await ws.receive()
        await trio.testing.wait_all_tasks_blocked()  # idle: no writer task
        started = trio.current_time()
        ws.connection.close("bye", reconnect=False)
        frames = await drain(ws)  # the client never closes its side
        await wait_until(lambda: not cable.connections)
        ended = trio.current_time() - started
    assert frames == [{"type": "disconnect", "reason": "bye", "reconnect": False}]
    assert len(log["unsubscribed"]) == 1
    assert ended < 1.0, ended  # virtual time: close_timeout would be 10


def test_channel_rules_are_made_once_per_class_and_follow_its_name() -> None:
    # Each subscription holds its channel's rules: one object per class,
    # not one per subscription (memory per connection).
    cable, _ = make_cable()
    rules = cable.channel_rules("RoomChannel")
    assert rules is not None
    assert rules is cable.channel_rules("RoomChannel")
    assert "speak" in rules.actions

    class Lobby(Channel):
        async def wave(self) -> None: ...

    other = Cable()
    other.channel(Lobby)
    assert other.channel_rules("Lobby") is not None
    cable.channel(name="Hall")(Lobby)  # the class is renamed
    hall = cable.channel_rules("Hall")
    assert hall is not None
    assert (hall.name, "wave" in hall.actions) == ("Hall", True)


async def test_stop_stream_from_and_streams_added_in_actions() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.receive()
        await ws.perform("RoomChannel", "join", {"stream": "extra"}, room="a")
        await ws.receive()
        assert await cable.broadcast("extra", {"n": 1}) == 1
        await ws.perform("RoomChannel", "leave", room="a")
        assert (await ws.receive())["message"] == {"n": 1}
        assert (await ws.receive())["message"] == {"left": True}
        assert await cable.broadcast("room:a", {}) == 0


async def test_connect_hook_sees_request_and_sets_identity() -> None:
    async def authenticate(request: Any) -> str | None:
        if request.cookies.get("sid") == "stolen":
            raise Unauthorized()
        return request.cookies.get("sid")

    cable, _ = make_cable(connect=authenticate)
    async with cable_test_client(
        cable,
        cookies={"sid": "alice"},
        headers={"X-App": "test"},
        query={"q": "1"},
    ) as ws:
        await subscribe(ws)
        await ws.receive()
        await ws.perform("RoomChannel", "whoami", room="a")
        assert (await ws.receive())["message"] == {
            "user": "alice",
            "authenticated": True,
            "cookie": "alice",
            "header": "test",
            "query": "1",
            "path": "/cable",
            "channel": "RoomChannel",
        }
    with pytest.raises(ConnectionRejected) as info:
        async with cable_test_client(cable, cookies={"sid": "stolen"}):
            pass  # pragma: no cover
    assert info.value.reason == "unauthorized"
    assert info.value.reconnect is False


async def test_sync_connect_hook_runs_and_anonymous_is_allowed() -> None:
    cable, _ = make_cable(connect=lambda request: None)
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.receive()
        await ws.perform("RoomChannel", "whoami", room="a")
        frame = await ws.receive()
        assert frame["message"]["authenticated"] is False


async def test_failing_connect_hook_closes_with_reason() -> None:
    def broken(request: Any) -> None:
        raise KeyError("db down")

    cable, _ = make_cable(connect=broken)
    with pytest.raises(ConnectionRejected) as info:
        async with cable_test_client(cable):
            pass  # pragma: no cover
    assert info.value.reason == "server_error"


async def test_broadcast_from_foreign_thread_and_worker_thread() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        await ws.receive()
        results: list[int] = []
        thread = threading.Thread(
            target=lambda: results.append(cable.broadcast_sync("room:a", {"t": 1}))
        )
        thread.start()
        await trio.to_thread.run_sync(thread.join)
        assert results == [1]
        assert (await ws.receive())["message"] == {"t": 1}
        count = await trio.to_thread.run_sync(cable.broadcast_sync, "room:a", {"t": 2})
        assert count == 1
        assert (await ws.receive())["message"] == {"t": 2}


def test_broadcast_sync_without_running_cable_is_a_clear_error() -> None:
    from trio_cable import CableError

    cable = Cable()
    with pytest.raises(CableError, match="not running"):
        cable.broadcast_sync("x", {})


async def test_broadcast_encodes_once_and_shares_frames() -> None:
    cable, _ = make_cable()
    seen: list[str] = []

    class Sink:
        identifier = IDENT

        def deliver(self, payload: str, frames: dict[str, str]) -> None:
            frame = frames.get(self.identifier)
            if frame is None:
                frame = frames[self.identifier] = payload
            seen.append(frame)

    sinks = [Sink() for _ in range(3)]
    for sink in sinks:
        cable.hub.add("s", sink)
    calls = 0
    import trio_cable._cable as cable_module

    original = cable_module.encode_payload

    def counting(data: Any) -> str:
        nonlocal calls
        calls += 1
        return original(data)

    cable_module.encode_payload = counting
    try:
        assert await cable.broadcast("s", {"big": "x" * 1000}) == 3
    finally:
        cable_module.encode_payload = original
    assert calls == 1
    assert seen[0] is seen[1] is seen[2]


async def test_capture_broadcasts() -> None:
    cable, _ = make_cable()
    async with cable_test_client(cable) as ws:
        await subscribe(ws)
        with capture_broadcasts(cable, "room:a") as captured:
            await ws.perform("RoomChannel", "speak", {"text": "hi"}, room="a")
            await ws.receive_matching(lambda f: "said" in f.get("message", {}))
        await cable.broadcast("room:a", {"after": True})
    assert captured == [{"said": "hi"}]


async def test_limits_on_subscriptions_and_pending_commands() -> None:
    cable, log = make_cable(max_subscriptions=2, max_pending_commands=2)
    async with cable_test_client(cable) as ws:
        await subscribe(ws, "a")
        await subscribe(ws, "b")
        third = await subscribe(ws, "c")
        assert third["type"] == "reject_subscription"
        assert third["reason"] == "too_many_subscriptions"
        await ws.perform("RoomChannel", "record", {"n": 1, "wait": True}, room="a")
        await trio.testing.wait_all_tasks_blocked()
        for n in range(2, 6):
            await ws.perform("RoomChannel", "record", {"n": n}, room="a")
        error = await ws.receive_matching(lambda f: f.get("type") == "error")
        assert error["reason"] == "too_many_commands"
        log["gate"].set()
        await ws.perform("RoomChannel", "speak", {"text": "ok"}, room="b")
        await ws.receive_matching(lambda f: f.get("message") == {"said": "ok"})


async def test_a_client_that_stops_reading_is_disconnected_not_waited_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, _ = make_cable(max_outbox_frames=8)
    async with (
        cable_test_client(cable) as good,
        cable_test_client(cable, buffer=1) as stalled,
    ):
        await subscribe(good)
        await subscribe(stalled)
        for n in range(100):
            # never blocks, whatever the stalled client does: on the mock
            # clock, time passes only if every task waits, and the 0.5 s
            # ends before the stalled client's close_timeout (1 s) could
            # release a broadcast that waited on it
            with trio.fail_after(0.5):
                await cable.broadcast("room:a", {"n": n})
            got = await good.receive_matching(lambda f: "n" in f.get("message", {}))
            assert got["message"] == {"n": n}
        assert cable.counters["too_slow"] == 1
        # its queue was dropped at once: memory stays bounded
        assert stalled.connection.transport.backlog_frames == 0
        # when it reads again it learns why, and may reconnect
        frames = await drain(stalled)
        assert len(frames) < 8
        assert frames[-1] == {
            "type": "disconnect",
            "reason": "too_slow",
            "reconnect": True,
        }
        await trio.testing.wait_all_tasks_blocked()
        assert cable.connections == {good.connection}


async def test_a_client_that_never_reads_again_is_closed_after_close_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cable, log = make_cable(max_outbox_frames=4, close_timeout=2.0)
    async with cable_test_client(cable, buffer=1) as stalled:
        await subscribe(stalled)
        for n in range(10):
            await cable.broadcast("room:a", {"n": n})
        start = trio.current_time()
        while stalled.connection in cable.connections:
            await trio.sleep(0.1)
        assert trio.current_time() - start == pytest.approx(2.0, abs=0.2)
        assert len(log["unsubscribed"]) == 1
        assert cable.hub.statistics().streams == 0
