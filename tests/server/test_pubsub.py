"""The built-in ``$pubsub`` channel: signed stream names (AnyCable's format,
Turbo's too) and opt-in public ones. The rules are checked without an event
loop; the channel on a live cable through the in-memory transport."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging

import pytest

from tests.helpers import served
from trio_cable import Cable, CableError, Channel
from trio_cable._pubsub import Opened, PubSubRules, Refusal
from trio_cable.client import SubscriptionRejected, open_cable_client
from trio_cable.testing import cable_test_client, identifier_for
from trio_cable.turbo import StreamSigner

SECRET = "s3cr3t-for-tests"
EXT = ["actioncable-v1-ext-json"]


def anycable_signed(name: str, secret: str) -> str:
    """The algorithm AnyCable documents (docs/signed_streams.md, its Python
    version), written out independently of trio_cable."""
    encoded = base64.b64encode(json.dumps(name).encode()).decode()
    digest = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).hexdigest()
    return f"{encoded}--{digest}"


def pubsub(**params: object) -> str:
    return json.dumps({"channel": "$pubsub", **params})


# -- the rules, pure ------------------------------------------------------------


def test_signing_is_anycables_format_and_turbos() -> None:
    rules = PubSubRules(SECRET)
    for name in ("chat/2024", "notifications:17", "caf\u00e9 \u2603", ""):
        signed = rules.sign(name)
        assert signed == anycable_signed(name, SECRET)
        assert signed == StreamSigner(SECRET).sign(name)
        assert rules.open({"signed_stream_name": signed}) == Opened(name, False)


def test_a_name_signed_elsewhere_verifies_and_back() -> None:
    """Signed by AnyCable's algorithm (or Rails: its JSON keeps non-ASCII
    characters, Python's escapes them) it opens the stream here."""
    rules = PubSubRules(SECRET)
    raw = base64.b64encode('"caf\u00e9"'.encode()).decode()
    ruby_style = (
        f"{raw}--{hmac.new(SECRET.encode(), raw.encode(), 'sha256').hexdigest()}"
    )
    assert rules.open({"signed_stream_name": ruby_style}) == Opened("caf\u00e9", False)
    assert StreamSigner(SECRET).verify(rules.sign("room:1")) == "room:1"


@pytest.mark.parametrize(
    "signed",
    [
        anycable_signed("chat/1", "another secret"),  # forged: another key
        anycable_signed("chat/1", SECRET)[:-1] + "0",  # digest tampered
        anycable_signed("chat/2", SECRET).split("--")[0]
        + "--"
        + anycable_signed("chat/1", SECRET).split("--")[1],  # name swapped
        anycable_signed("chat/1", SECRET).split("--")[0],  # no digest
        "--",
        "not signed at all",
        42,
        ["a", "list"],
    ],
)
def test_forged_or_tampered_names_are_refused(signed: object) -> None:
    refusal = PubSubRules(SECRET).open({"signed_stream_name": signed})
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "invalid_signature"


def test_a_signed_value_that_is_not_a_string_is_refused() -> None:
    signer = StreamSigner(SECRET)
    signed = signer._verifier.generate({"stream": "x"})
    refusal = PubSubRules(SECRET).open({"signed_stream_name": signed})
    assert refusal == Refusal(
        "invalid_signature", "the signed value is not a stream name"
    )


def test_key_rotation_the_first_signs_any_verifies() -> None:
    old = PubSubRules("old key").sign("room")
    rules = PubSubRules(["new key", "old key"])
    assert rules.open({"signed_stream_name": old}) == Opened("room", False)
    assert rules.sign("room") == anycable_signed("room", "new key")


def test_public_streams_are_off_by_default() -> None:
    refusal = PubSubRules(SECRET).open({"stream_name": "chat"})
    assert isinstance(refusal, Refusal)
    assert refusal.reason == "public_streams_off"
    assert PubSubRules(SECRET, public=True).open({"stream_name": "chat"}) == Opened(
        "chat", whisper=True
    )


def test_signed_wins_over_public_and_whisper_follows_the_option() -> None:
    rules = PubSubRules(SECRET, public=True, whisper=True)
    params = {"signed_stream_name": rules.sign("a"), "stream_name": "b"}
    assert rules.open(params) == Opened("a", whisper=True)
    bad = {"signed_stream_name": "forged--00", "stream_name": "b"}
    assert isinstance(rules.open(bad), Refusal)  # no fallback to the public name


@pytest.mark.parametrize(
    ("rules", "params", "reason"),
    [
        (PubSubRules(SECRET, public=True), {}, "no_stream_name"),
        (PubSubRules(SECRET, public=True), {"stream_name": ""}, "no_stream_name"),
        (PubSubRules(SECRET, public=True), {"stream_name": 7}, "invalid_stream_name"),
        (
            PubSubRules(public=True),
            {"signed_stream_name": "x--y"},
            "signed_streams_off",
        ),
    ],
)
def test_what_opens_nothing_says_why(
    rules: PubSubRules, params: dict[str, object], reason: str
) -> None:
    refusal = rules.open(params)
    assert isinstance(refusal, Refusal)
    assert refusal.reason == reason
    assert refusal.message


def test_signing_needs_a_secret_and_a_string() -> None:
    with pytest.raises(CableError, match="streams_secret"):
        Cable().signed_stream_name("room")
    with pytest.raises(CableError, match="streams_secret"):
        Cable(public_streams=True).signed_stream_name("room")
    with pytest.raises(TypeError):
        Cable(streams_secret=SECRET).signed_stream_name(17)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Cable(streams_secret="")


def test_the_secret_stays_out_of_the_options_repr() -> None:
    assert SECRET not in repr(Cable(streams_secret=SECRET).options)


def test_the_channel_is_there_only_when_asked_for() -> None:
    assert "$pubsub" not in Cable().channels
    assert "$pubsub" in Cable(streams_secret=SECRET).channels
    assert "$pubsub" in Cable(public_streams=True).channels
    # One class per cable: two cables' rules never mix.
    one, two = Cable(streams_secret="a"), Cable(streams_secret="b")
    assert one.channels["$pubsub"] is not two.channels["$pubsub"]


# -- on a live cable ------------------------------------------------------------


async def test_a_signed_subscription_receives_broadcasts() -> None:
    cable = Cable(streams_secret=SECRET)
    async with cable.running(), cable_test_client(cable) as client:
        await client.send_command(
            "subscribe", pubsub(signed_stream_name=cable.signed_stream_name("news"))
        )
        confirmed = await client.receive()
        assert confirmed["type"] == "confirm_subscription"
        await cable.broadcast("news", {"n": 1})
        frame = await client.receive()
        assert frame["message"] == {"n": 1}
        assert frame["identifier"] == confirmed["identifier"]


async def test_refusals_name_the_reason_log_once_and_lose_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cable = Cable(streams_secret=SECRET)

    @cable.channel
    class Room(Channel):
        async def subscribed(self) -> None:
            self.stream_from("room")

    caplog.set_level(logging.DEBUG, "trio_cable")
    async with cable.running(), cable_test_client(cable) as client:
        await client.subscribe("Room")
        forged = anycable_signed("room", "guessed")
        cases = [
            (pubsub(signed_stream_name=forged), "invalid_signature"),
            (pubsub(stream_name="room"), "public_streams_off"),
        ]
        for identifier, reason in cases:
            await client.send_command("subscribe", identifier)
            frame = await client.receive()
            assert frame["type"] == "reject_subscription"
            assert frame["identifier"] == identifier
            assert frame["reason"] == reason
            assert frame["message"]
            lines = [r for r in caplog.records if identifier in r.getMessage()]
            assert len(lines) == 1, [r.getMessage() for r in lines]
            assert reason in lines[0].getMessage()
        # Nothing of them is left; the connection and its other
        # subscription carry on.
        assert list(client.connection.subscriptions) == [identifier_for("Room")]
        assert cable.hub.streams() == ["room"]
        await cable.broadcast("room", {"still": "here"})
        assert (await client.receive())["message"] == {"still": "here"}


async def test_the_python_client_subscribes_and_is_told_why_not() -> None:
    cable = Cable(streams_secret=SECRET)
    async with (
        served(cable) as port,
        open_cable_client(f"ws://127.0.0.1:{port}/cable") as client,
    ):
        signed = cable.signed_stream_name("news")
        async with client.subscribe("$pubsub", signed_stream_name=signed) as news:
            await cable.broadcast("news", {"n": 1})
            assert await news.receive() == {"n": 1}
        with pytest.raises(SubscriptionRejected) as info:
            async with client.subscribe("$pubsub", signed_stream_name=signed + "0"):
                pytest.fail("not reached")  # pragma: no cover
        assert info.value.reason == "invalid_signature"
        assert client.connected


async def test_public_streams_subscribe_when_on() -> None:
    cable = Cable(public_streams=True)
    async with cable.running(), cable_test_client(cable) as client:
        await client.send_command("subscribe", pubsub(stream_name="lobby"))
        assert (await client.receive())["type"] == "confirm_subscription"
        await cable.broadcast("lobby", "hello")
        assert (await client.receive())["message"] == "hello"


def whisper(identifier: str, data: object) -> str:
    return json.dumps({"command": "whisper", "identifier": identifier, "data": data})


async def test_whispers_on_public_streams_and_on_signed_ones_when_allowed() -> None:
    for options, name_for in [
        ({"public_streams": True}, lambda cable, s: {"stream_name": s}),
        (
            {"streams_secret": SECRET, "streams_whisper": True},
            lambda cable, s: {"signed_stream_name": cable.signed_stream_name(s)},
        ),
    ]:
        cable = Cable(**options)  # type: ignore[arg-type]
        identifier = pubsub(**name_for(cable, "typing"))
        async with (
            cable.running(),
            cable_test_client(cable, subprotocols=EXT) as ann,
            cable_test_client(cable, subprotocols=EXT) as bob,
        ):
            for client in (ann, bob):
                await client.send_command("subscribe", identifier)
                assert (await client.receive())["type"] == "confirm_subscription"
            await ann.send_raw(whisper(identifier, {"typing": "ann"}))
            assert (await bob.receive())["message"] == {"typing": "ann"}
            await cable.broadcast("typing", {"marker": 1})
            # The sender's next frame is the broadcast: no echo came first.
            assert (await ann.receive())["message"] == {"marker": 1}


async def test_signed_streams_refuse_whispers_by_default() -> None:
    cable = Cable(streams_secret=SECRET)
    identifier = pubsub(signed_stream_name=cable.signed_stream_name("quiet"))
    async with cable.running(), cable_test_client(cable, subprotocols=EXT) as ann:
        await ann.send_command("subscribe", identifier)
        assert (await ann.receive())["type"] == "confirm_subscription"
        await ann.send_raw(whisper(identifier, {"typing": True}))
        error = await ann.receive()
        assert error["reason"] == "whisper_not_allowed"


async def test_a_pubsub_stream_with_history_recovers_like_any_other() -> None:
    cable = Cable(streams_secret=SECRET, history=["feed:*"])
    identifier = pubsub(signed_stream_name=cable.signed_stream_name("feed:1"))
    async with cable.running():
        for n in range(5):
            await cable.broadcast("feed:1", {"n": n})
        epoch = cable.hub.history.epoch  # type: ignore[union-attr]
        async with cable_test_client(cable, subprotocols=EXT) as client:
            history = {"streams": {"feed:1": {"epoch": epoch, "offset": 2}}}
            await client.send_raw(
                json.dumps(
                    {
                        "command": "subscribe",
                        "identifier": identifier,
                        "history": history,
                    }
                )
            )
            frames = [await client.receive() for _ in range(5)]
            assert [f.get("type") for f in frames] == [
                "confirm_subscription",
                None,
                None,
                None,
                "confirm_history",
            ]
            assert [f["message"]["n"] for f in frames[1:4]] == [2, 3, 4]
            assert [f["offset"] for f in frames[1:4]] == [3, 4, 5]
            assert {f["stream_id"] for f in frames[1:4]} == {"feed:1"}
            await cable.broadcast("feed:1", {"n": 5})
            live = await client.receive()
            assert (live["message"], live["offset"]) == ({"n": 5}, 6)
