"""Hostile input, one kind at a time, through the in-memory client.

Every case sends its bad frames on one connection while a neighbour
connection sits subscribed to the same stream, and checks three things:
the exact error the server answers with, that the same connection still
subscribes, performs and receives afterwards, and that the neighbour saw
nothing but the broadcasts it was owed.

The in-memory transport is wrapped so that every frame the server sends
must be valid UTF-8, as on a real socket (a lone surrogate escaped in a
client's JSON once crashed the writer, and with it the whole server).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from trio_cable import Cable, Channel
from trio_cable.protocol.server import did_you_mean
from trio_cable.testing import (
    MemoryTransport,
    TestClient,
    cable_test_client,
    identifier_for,
)

Frame = dict[str, Any]
ROOM = identifier_for("Room")
ABSENT = object()  # "no about key" in expected errors


@pytest.fixture(autouse=True)
def utf8_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse, like a real WebSocket, server frames that are not UTF-8."""
    original = MemoryTransport.write_nowait

    def write_nowait(self: MemoryTransport, frame: str) -> int:
        frame.encode("utf-8")
        return original(self, frame)

    monkeypatch.setattr(MemoryTransport, "write_nowait", write_nowait)


class Hooks:
    """Which channel instances (by serial number) ran subscribed() and
    unsubscribed()."""

    def __init__(self) -> None:
        self.subscribed: list[int] = []
        self.unsubscribed: list[int] = []

    def paired(self) -> bool:
        return sorted(self.subscribed) == sorted(self.unsubscribed) and len(
            set(self.subscribed)
        ) == len(self.subscribed)


def make_cable(hooks: Hooks | None = None) -> Cable:
    # No rate limit and no pings: these tests count frames exactly.
    cable = Cable(
        commands_per_second=1e9,
        command_burst=10**9,
        max_subscriptions=10_000,
        ping_interval=3600,
    )
    hooks = hooks or Hooks()
    serials = itertools.count()

    @cable.channel
    class Room(Channel):
        secret = "a class attribute, not an action"

        async def subscribed(self) -> None:
            self.serial = next(serials)  # ids of dead objects get reused
            hooks.subscribed.append(self.serial)
            if self.params.get("slow"):
                await trio.lowlevel.checkpoint()
            # Only the plain Room subscription listens to "room", so
            # alive() knows exactly who a broadcast reaches.
            race = self.params.get("race")
            if race is not None:
                self.stream_from(f"race:{race}")
            else:
                self.stream_from("other" if self.params else "room")

        async def unsubscribed(self) -> None:
            hooks.unsubscribed.append(self.serial)

        async def echo(self, data: dict[str, Any]) -> None:
            self.transmit({"echo": data.get("n")})

        async def receive(self, data: dict[str, Any]) -> None:
            self.transmit({"received": data})

        @property
        def prop(self) -> int:
            return 1

        @staticmethod
        def static() -> None:
            raise AssertionError("never called")

        @classmethod
        def klass(cls) -> None:
            raise AssertionError("never called")

    @cable.channel
    class Echo(Channel):
        async def subscribed(self) -> None:
            self.transmit({"params": dict(self.params)})

    return cable


async def next_frame(ws: TestClient) -> Frame:
    with trio.fail_after(5):
        return await ws.receive()


async def expect_error(
    ws: TestClient, reason: str, about: Any = ABSENT, message: str | None = None
) -> Frame:
    """The very next frame is an error frame with this reason."""
    frame = await next_frame(ws)
    assert frame["type"] == "error", frame
    assert frame["identifier"] == ""  # never reaches a received() callback
    assert frame["reason"] == reason, frame
    if about is ABSENT:
        assert "about" not in frame, frame
    else:
        assert frame["about"] == about, frame
    if message is not None:
        assert frame["message"] == message
    return frame


_probes = itertools.count()


async def alive(cable: Cable, ws: TestClient, neighbour: TestClient) -> None:
    """``ws`` still performs and receives; ``neighbour`` got only broadcasts."""
    n = next(_probes)
    await ws.perform("Room", "echo", {"n": n})
    assert (await next_frame(ws)) == {"identifier": ROOM, "message": {"echo": n}}
    assert await cable.broadcast("room", {"b": n}) == 2
    expected = {"identifier": ROOM, "message": {"b": n}}
    assert (await next_frame(ws)) == expected
    assert (await next_frame(neighbour)) == expected


@asynccontextmanager
async def clients(
    cable: Cable | None = None,
) -> AsyncIterator[tuple[Cable, TestClient, TestClient]]:
    """A cable and two connections subscribed to Room: the one under attack
    and its neighbour. On exit both are checked to be alive."""
    cable = cable or make_cable()
    async with cable_test_client(cable) as ws, cable_test_client(cable) as neighbour:
        for client in (ws, neighbour):
            confirm = await client.subscribe("Room")
            assert confirm["type"] == "confirm_subscription"
        yield cable, ws, neighbour
        await alive(cable, ws, neighbour)


def frame(command: Any, identifier: Any = ROOM, data: Any = ABSENT) -> str:
    out: dict[str, Any] = {"command": command, "identifier": identifier}
    if data is not ABSENT:
        out["data"] = data
    return json.dumps(out)


def message(data: Any, identifier: str = ROOM) -> str:
    return frame("message", identifier, data)


# -- garbage ------------------------------------------------------------------


async def test_random_bytes_are_refused_as_binary_frames() -> None:
    rng = random.Random(5)
    async with clients() as (cable, ws, neighbour):
        for size in (1, 2, 10, 100, 1000, 60_000):
            await ws.send_raw(rng.randbytes(size))
            await expect_error(
                ws, "invalid_request", message="binary frames are not supported"
            )
            await alive(cable, ws, neighbour)


async def test_random_text_is_invalid_json() -> None:
    rng = random.Random(6)
    async with clients() as (cable, ws, neighbour):
        for size in (1, 3, 10, 100, 1000, 30_000):
            text = rng.randbytes(size).decode("latin-1")
            await ws.send_raw("\x00" + text)  # a NUL first: never JSON
            await expect_error(ws, "invalid_json")
            await alive(cable, ws, neighbour)


@pytest.mark.parametrize(
    ("raw", "reason", "about"),
    [
        ("", "invalid_json", ABSENT),
        ("   ", "invalid_json", ABSENT),
        ("null", "invalid_json", ABSENT),
        ("42", "invalid_json", ABSENT),
        ('"subscribe"', "invalid_json", ABSENT),
        ("[]", "invalid_json", ABSENT),
        ('[{"command":"subscribe"}]', "invalid_json", ABSENT),
        ("{}", "unknown_command", ABSENT),
        ('{"command":null}', "unknown_command", ABSENT),
        ('{"command":["subscribe"]}', "unknown_command", ABSENT),
        ('{"command":{"subscribe":1}}', "unknown_command", ABSENT),
        (frame("SUBSCRIBE"), "unknown_command", ROOM),
        (frame("perform"), "unknown_command", ROOM),
        ('{"command":"subscribe"}', "invalid_request", ABSENT),
        ('{"command":"subscribe","identifier":null}', "invalid_request", ABSENT),
        ('{"command":"unsubscribe","identifier":7}', "invalid_request", ABSENT),
        (frame("subscribe", {"channel": "Room"}), "invalid_request", ABSENT),
        (frame("subscribe", "{"), "invalid_json", "{"),
        ('{"command":"subscribe","identifier":"' + ROOM[:-1], "invalid_json", ABSENT),
    ],
)
async def test_malformed_frames(raw: str, reason: str, about: Any) -> None:
    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw(raw)
        await expect_error(ws, reason, about)
        assert len(ws.connection.subscriptions) == 1


async def test_every_truncation_of_a_frame_is_invalid_json() -> None:
    full = message(json.dumps({"action": "echo", "n": "ünïcödé"}))
    async with clients() as (_cable, ws, _neighbour):
        for cut in range(len(full)):
            await ws.send_raw(full[:cut])
            await expect_error(ws, "invalid_json")
        await ws.send_raw(full)
        assert (await next_frame(ws))["message"] == {"echo": "ünïcödé"}


async def test_binary_frame_holding_a_valid_command_is_refused() -> None:
    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw(frame("subscribe", identifier_for("Room", a=1)).encode())
        await expect_error(ws, "invalid_request")
        await ws.send_raw(message(json.dumps({"action": "echo"})).encode())
        await expect_error(ws, "invalid_request")
        assert list(ws.connection.subscriptions) == [ROOM]


# -- numbers, nesting, encodings ----------------------------------------------


async def test_huge_numbers() -> None:
    big = "1" + "0" * 5000  # past Python's 4300-digit int limit
    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw(message('{"action":"echo","n":' + big + "}"))
        await expect_error(ws, "invalid_json", ROOM)
        ident = '{"channel":"Room","n":' + big[:900] + "}"
        await ws.send_raw(frame("subscribe", ident))  # 900 digits: fine...
        assert (await next_frame(ws))["type"] == "confirm_subscription"
        ident = '{"channel":"Room","n":' + big + "}"
        await ws.send_raw(frame("subscribe", ident))  # ...5001: too large
        await expect_error(ws, "identifier_too_large")  # not echoed back
        # 1e400 is valid JSON and decodes to inf, which the server cannot
        # send back: an action that echoes it fails, cleanly.
        await ws.send_raw(message('{"action":"echo","n":1e400}'))
        await expect_error(ws, "server_error", ROOM, "action 'echo' failed")
        await ws.send_raw(message('{"action":"echo","n":-1e400}'))
        await expect_error(ws, "server_error", ROOM)
        exact = 2**200 + 1
        await ws.send_raw(message(json.dumps({"action": "echo", "n": exact})))
        assert (await next_frame(ws))["message"] == {"echo": exact}
        await ws.send_raw(message('{"action":"echo","n":1e-400}'))
        assert (await next_frame(ws))["message"] == {"echo": 0.0}


async def test_deeply_nested_json() -> None:
    def nested(depth: int) -> str:
        return '{"a":' * depth + "1" + "}" * depth

    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw("[" * 30_000 + "]" * 30_000)  # beyond the parser's stack
        await expect_error(ws, "invalid_json")
        await ws.send_raw('{"command":' + "[" * 30_000 + "]" * 30_000 + "}")
        await expect_error(ws, "invalid_json")
        await ws.send_raw("[" * 100_000)  # beyond max_frame_bytes
        await expect_error(ws, "frame_too_large")
        ident = '{"channel":"Room","p":' + nested(16) + "}"
        await ws.send_raw(frame("subscribe", ident))
        await expect_error(
            ws, "json_too_deep", ident, "identifier nests deeper than 16 levels"
        )
        await ws.send_raw(message('{"action":"echo","p":' + nested(16) + "}"))
        await expect_error(
            ws, "json_too_deep", ROOM, "data nests deeper than 16 levels"
        )
        await ws.send_raw(message('{"action":"echo","n":' + nested(14) + "}"))
        assert (await next_frame(ws))["message"]["echo"]["a"]  # 15 levels: fine


async def test_invalid_utf8_and_lone_surrogates() -> None:
    async with clients() as (_cable, ws, _neighbour):
        # Invalid UTF-8 cannot arrive as text (the WebSocket layer closes
        # with 1007); as a binary frame it is refused.
        await ws.send_raw(b'{"command":"subscribe","identifier":"\xff"}')
        await expect_error(ws, "invalid_request")
        # Bytes decoded with surrogateescape: lone surrogates in the text.
        await ws.send_raw('{"command":"subscribe","identifier":"\udcff"}')
        await expect_error(ws, "invalid_json", "\udcff")
        # "\ud800" escapes are valid JSON for strings UTF-8 cannot hold.
        await ws.send_raw('{"command":"message","identifier":"\\ud800","data":"{}"}')
        await expect_error(ws, "not_subscribed", "\ud800")
        ident = '{"channel":"Room","x":"\\ud800"}'  # the param holds one
        await ws.send_raw(frame("subscribe", ident))
        assert (await next_frame(ws)) == {
            "identifier": ident,
            "type": "confirm_subscription",
        }
        ident = '{"channel":"Room","x":"\ud800"}'  # the identifier holds one
        await ws.send_raw(frame("subscribe", ident))
        confirm = await next_frame(ws)
        assert confirm["identifier"] == ident  # echoed exactly
        await ws.send_raw(message('{"action":"echo","n":"\\udfff"}'))
        assert (await next_frame(ws))["message"] == {"echo": "\udfff"}
        await ws.send_raw(message('{"action":"echo\\ud800"}'))
        await expect_error(ws, "unknown_action", ROOM)
        assert len(ws.connection.subscriptions) == 3


# -- identifiers and channels -------------------------------------------------

NOT_OBJECTS = ["[]", '["Room"]', "1", "-1.5", '"Room"', '""', "null", "true", "false"]


@pytest.mark.parametrize("ident", NOT_OBJECTS)
async def test_identifiers_that_are_json_but_not_objects(ident: str) -> None:
    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw(frame("subscribe", ident))
        await expect_error(
            ws, "invalid_request", ident, "identifier must encode an object"
        )
        await ws.send_raw(message('{"action":"echo"}', ident))
        await expect_error(ws, "not_subscribed", ident)
        await ws.send_raw(frame("unsubscribe", ident))
        await expect_error(ws, "not_subscribed", ident)
        assert list(ws.connection.subscriptions) == [ROOM]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"room": "Room"},
        {"channel": None},
        {"channel": 1},
        {"channel": True},
        {"channel": ["Room"]},
        {"channel": {"name": "Room"}},
        {"channel": ""},
    ],
)
async def test_channel_missing_or_not_a_string(params: dict[str, Any]) -> None:
    ident = json.dumps(params)
    async with clients() as (_cable, ws, _neighbour):
        await ws.send_raw(frame("subscribe", ident))
        await expect_error(
            ws, "invalid_request", ident, "identifier needs a string 'channel'"
        )


@pytest.mark.parametrize("name", ["Nope", "room", "Channel", "__class__", "Room "])
async def test_unknown_channels_are_rejected_with_a_reason(name: str) -> None:
    async with clients() as (_cable, ws, _neighbour):
        ident = identifier_for(name)
        await ws.send_raw(frame("subscribe", ident))
        rejected = await next_frame(ws)
        assert rejected == {
            "identifier": ident,
            "type": "reject_subscription",
            "reason": "unknown_channel",
            "message": rejected["message"],
        }
        # It names the channel asked for, and only registered ones besides.
        assert rejected["message"].startswith(f"no channel {name!r} (")


PARAM_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -2.5e-300,
    2**64,
    "",
    "ünïcödé ☃ 😀 \u2028",
    '\u0000\u001f"\\',
    [],
    [1, "a", None, [2, {}]],
    {},
    {"a": {"b": [1, {"c": None}]}, "": ""},
]


async def test_params_of_every_json_type() -> None:
    async with clients() as (_cable, ws, _neighbour):
        for i, value in enumerate(PARAM_VALUES):
            params = {"p": value, "i": i}
            for ident in (
                json.dumps({"channel": "Echo", **params}),  # ASCII, spaced
                json.dumps({**params, "channel": "Echo"}, ensure_ascii=False),
            ):
                await ws.send_raw(frame("subscribe", ident))
                # Transmitted in subscribed(): just before the confirmation.
                first, second = await next_frame(ws), await next_frame(ws)
                assert first == {"identifier": ident, "message": {"params": params}}
                assert second == {"identifier": ident, "type": "confirm_subscription"}
        await ws.send_raw(frame("subscribe", '{"channel":"Echo"}'))
        assert (await next_frame(ws))["message"] == {"params": {}}
        assert (await next_frame(ws))["type"] == "confirm_subscription"
        assert len(ws.connection.subscriptions) == 2 * len(PARAM_VALUES) + 2


async def test_data_of_every_json_type() -> None:
    async with clients() as (_cable, ws, _neighbour):
        for value in PARAM_VALUES:
            data = {"v": value}  # no action: the default receive action
            await ws.send_raw(message(json.dumps(data)))
            assert (await next_frame(ws))["message"] == {"received": data}
        for value in PARAM_VALUES:
            if isinstance(value, dict):
                continue
            await ws.send_raw(message(json.dumps(value)))
            await expect_error(ws, "invalid_json", ROOM, "data must encode an object")
            await ws.send_raw(message(value))  # not a JSON-encoded object
            reason = "invalid_json" if isinstance(value, str) else "invalid_request"
            await expect_error(ws, reason, ROOM)
            if not isinstance(value, str):
                await ws.send_raw(message(json.dumps({"action": value})))
                await expect_error(ws, "invalid_action", ROOM)
        await ws.send_raw(frame("message"))  # no data at all
        await expect_error(ws, "invalid_request", ROOM)


# -- actions named after internals --------------------------------------------

PUBLIC_NAMES = sorted(name for name in dir(Channel) if not name.startswith("_"))
PRIVATE_NAMES = ["_x", "__init__", "__class__", "__dict__", "_subscription", "_actions"]


async def test_actions_named_after_internals_are_refused() -> None:
    hooks = Hooks()
    assert {"subscribed", "unsubscribed", "reject", "transmit", "broadcast"} <= set(
        PUBLIC_NAMES
    )
    async with clients(make_cable(hooks)) as (cable, ws, _neighbour):
        for name in PUBLIC_NAMES:
            await ws.perform("Room", name)
            await expect_error(ws, "invalid_action", ROOM, f"{name!r} is not an action")
        for name in PRIVATE_NAMES:
            await ws.perform("Room", name)
            await expect_error(ws, "invalid_action", ROOM, f"{name!r} is private")
        for name in ["secret", "prop", "static", "klass", "nope", "", "echo "]:
            await ws.perform("Room", name)
            # The hint lists the real actions only, never an internal.
            hint = did_you_mean(name, ["echo", "receive"], "actions")
            await expect_error(
                ws, "unknown_action", ROOM, f"Room has no action {name!r}{hint}"
            )
        # None of them ran: no hook twice, no reject, no stream left.
        assert len(hooks.subscribed) == 2
        assert hooks.unsubscribed == []
        assert ws.connection.subscriptions[ROOM].streams == ["room"]
        assert cable.hub.subscribers("room") == 2


# -- duplicate and racing subscribe/unsubscribe -------------------------------


async def test_duplicate_subscribes_are_confirmed_once_with_one_subscription() -> None:
    hooks = Hooks()
    async with clients(make_cable(hooks)) as (cable, ws, _neighbour):
        ident = identifier_for("Room", race="dup", slow=True)
        for _ in range(5):
            await ws.send_raw(frame("subscribe", ident))
        assert (await next_frame(ws)) == {
            "identifier": ident,
            "type": "confirm_subscription",
        }
        # The probe's answer is the next frame: no confirmation came
        # between (frames of one connection arrive in order).
        await ws.send_raw(message(json.dumps({"action": "echo", "n": 1}), ident))
        assert (await next_frame(ws)) == {"identifier": ident, "message": {"echo": 1}}
        assert len(hooks.subscribed) == 3  # ws, neighbour, and this one once
        assert cable.hub.subscribers("race:dup") == 1


def replay(ops: tuple[str, ...]) -> tuple[bool, int, int, set[int], set[int]]:
    """What the reader must do with ``ops`` (S/U/M) in arrival order:
    (subscribed at the end, subscriptions created, not_subscribed errors,
    M indices that must be answered, M indices that may be)."""
    live, created, errors = False, 0, 0
    since_creation: set[int] = set()
    allowed: set[int] = set()
    for i, op in enumerate(ops):
        if op == "S" and not live:
            live, created, since_creation = True, created + 1, set()
        elif op == "U":
            errors += not live
            live = False
        elif op == "M":
            if live:
                since_creation.add(i)
                allowed.add(i)
            else:
                errors += 1
    return live, created, errors, (since_creation if live else set()), allowed


PROBE = {"identifier": ROOM, "message": {"echo": "probe"}}


@pytest.mark.parametrize("slow", [False, True], ids=["sync", "slow_subscribed"])
async def test_racing_subscribe_unsubscribe_message(slow: bool) -> None:
    """Every interleaving of up to five subscribe/unsubscribe/message
    commands for one identifier, sent without waiting for answers. Each
    ends consistent: one live subscription or none, hub counts to match,
    every message answered exactly as the reader's order implies, and
    every subscribed() paired with one unsubscribed() once closed."""
    hooks = Hooks()
    cable = make_cable(hooks)
    sequences = [ops for n in range(1, 6) for ops in itertools.product("SUM", repeat=n)]
    expected_created = 0
    totals = {"confirms": 0, "echoes": 0, "not_subscribed": 0, "unanswered": 0}
    async with clients(cable) as (_, ws, neighbour):
        for race, ops in enumerate(sequences):
            ident = identifier_for("Room", race=race, slow=slow)
            live, created, errors, required, allowed = replay(ops)
            expected_created += created
            for i, op in enumerate(ops):
                if op == "M":
                    data = json.dumps({"action": "echo", "n": i})
                    await ws.send_raw(message(data, ident))
                    continue
                command = "subscribe" if op == "S" else "unsubscribe"
                await ws.send_raw(frame(command, ident))
            await trio.testing.wait_all_tasks_blocked()
            # A probe on the Room subscription marks the end of the answers.
            await ws.perform("Room", "echo", {"n": "probe"})
            answers: list[Frame] = []
            while (answer := await next_frame(ws)) != PROBE:
                answers.append(answer)
            context = (ops, answers)
            assert all(a["identifier"] in (ident, "") for a in answers), context
            echoes = [a["message"]["echo"] for a in answers if "type" not in a]
            assert echoes == sorted(echoes), context
            assert required <= set(echoes) <= allowed, context
            errs = [a for a in answers if a.get("type") == "error"]
            assert len(errs) == errors, context
            assert all(e["reason"] == "not_subscribed" for e in errs), context
            confirms = [a for a in answers if a.get("type") == "confirm_subscription"]
            assert len(confirms) <= ops.count("S"), context
            assert not live or confirms, context
            assert (ident in ws.connection.subscriptions) == live, context
            assert cable.hub.subscribers(f"race:{race}") == int(live), context
            assert len(hooks.subscribed) == 2 + expected_created, context
            still_open = len(ws.connection.subscriptions) + 1  # and neighbour's
            assert len(hooks.unsubscribed) == len(hooks.subscribed) - still_open
            totals["confirms"] += len(confirms)
            totals["echoes"] += len(echoes)
            totals["not_subscribed"] += len(errs)
            # performed on a subscription unsubscribed before its confirmation
            totals["unanswered"] += len(allowed) - len(echoes)
        await alive(cable, ws, neighbour)
    assert hooks.paired()
    assert cable.hub.statistics().subscribers == 0
    assert cable.connections == frozenset()
    print(f"\n{len(sequences)} sequences: {totals}, {len(hooks.subscribed)} hooks")
