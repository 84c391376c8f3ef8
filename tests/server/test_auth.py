"""Authentication helpers: signed tokens and cookies (round trips, key
rotation, expiry, purposes, refusal of forged, expired and tampered ones),
session cookies, the connect hook, Rails interop, and docs/security.md."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import logging
import shutil
import subprocess
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_cable
from tests.helpers import doc_tests, load_doc
from trio_cable import Cable, Channel, ConnectionRejected, Unauthorized, auth, turbo
from trio_cable.testing import cable_test_client

KEYS = ["current-key", "previous-key"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=10,
)


class Clock:
    def __init__(self, time: float = 1_700_000_000.0) -> None:
        self.time = time

    def __call__(self) -> float:
        return self.time


def hmac_hex(key: bytes, data: str) -> str:
    return hmac.new(key, data.encode(), hashlib.sha256).hexdigest()


# -- signed tokens --------------------------------------------------------------


@given(value=JSON, purpose=st.none() | st.text(min_size=1), url_safe=st.booleans())
def test_round_trip(value: Any, purpose: str | None, url_safe: bool) -> None:
    token = auth.sign(value, keys=KEYS, purpose=purpose, url_safe=url_safe)
    assert auth.verify(token, keys=KEYS, purpose=purpose) == value


def test_url_safe_tokens_need_no_escaping() -> None:
    token = auth.sign("?" * 50, keys=KEYS, purpose="cable")
    assert set(token) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_key_rotation() -> None:
    old = auth.sign("ana", keys="previous-key", purpose="cable")
    assert auth.verify(old, keys=KEYS, purpose="cable") == "ana", "old key verifies"
    new = auth.sign("ana", keys=KEYS, purpose="cable")
    data, digest = new.split("--")
    assert digest == hmac_hex(b"current-key", data), "the first key signs"
    with pytest.raises(auth.InvalidSignature):
        auth.verify(new, keys=["previous-key"], purpose="cable")
    assert auth.verify(new, keys=[b"current-key"], purpose="cable") == "ana"


@pytest.mark.parametrize("keys", [[], "", [b"ok", b""]])
def test_empty_keys_are_refused(keys: Any) -> None:
    with pytest.raises(ValueError, match="empty"):
        auth.sign(1, keys=keys, purpose=None)


def test_expiry_with_a_fake_clock() -> None:
    clock = Clock()
    token = auth.sign("x", keys=KEYS, purpose="p", expires_in=60, now=clock)
    clock.time += 59.999
    assert auth.verify(token, keys=KEYS, purpose="p", now=clock) == "x"
    clock.time += 0.001
    with pytest.raises(auth.TokenExpired) as expired:
        auth.verify(token, keys=KEYS, purpose="p", now=clock)
    assert expired.value.reason == "token_expired"
    assert isinstance(expired.value, trio_cable.CableError)


def test_expires_at() -> None:
    at = datetime.datetime(
        2030, 1, 1, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    token = auth.sign("x", keys=KEYS, purpose="p", expires_at=at)
    before, after = Clock(at.timestamp() - 1), Clock(at.timestamp())
    assert auth.verify(token, keys=KEYS, purpose="p", now=before) == "x"
    with pytest.raises(auth.TokenExpired):
        auth.verify(token, keys=KEYS, purpose="p", now=after)
    envelope = json.loads(base64.urlsafe_b64decode(token.split("--")[0] + "=="))
    assert envelope["_rails"]["exp"] == "2030-01-01T10:00:00.000Z", "Rails' format"
    with pytest.raises(ValueError, match="aware"):
        auth.sign("x", keys=KEYS, purpose="p", expires_at=datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="not both"):
        auth.sign("x", keys=KEYS, purpose="p", expires_at=at, expires_in=1)


def test_an_expired_token_for_another_purpose_is_not_called_expired() -> None:
    token = auth.sign("x", keys=KEYS, purpose="a", expires_in=-1)
    with pytest.raises(auth.InvalidSignature):
        auth.verify(token, keys=KEYS, purpose="b")


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


TOKEN = auth.sign({"user": "ana"}, keys=KEYS, purpose="cable", expires_in=10**9)
DATA = TOKEN.split("--")[0]
MESSAGES = {"not a signed message", "bad signature", "signed for another purpose"}
REFUSED = {
    "payload tampered": _flip(TOKEN, 10),
    "signature tampered": TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1"),
    "signature upper-cased": DATA + "--" + TOKEN.split("--")[1].upper(),
    "truncated signature": TOKEN[:-2],
    "truncated payload": TOKEN[5:],
    "no signature": DATA,
    "no payload": "--" + TOKEN.split("--")[1],
    "empty": "",
    "garbage": "not a token at all",
    "non-ascii": TOKEN + "é",
    "another purpose": auth.sign({"user": "ana"}, keys=KEYS, purpose="reset"),
    "no purpose": auth.sign({"user": "ana"}, keys=KEYS, purpose=None),
    "forged with another key": auth.sign(
        {"user": "ana"}, keys="guess", purpose="cable"
    ),
    "payload swapped": auth.sign({"user": "bob"}, keys=KEYS, purpose="cable").split(
        "--"
    )[0]
    + "--"
    + TOKEN.split("--")[1],
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_tokens(name: str) -> None:
    with pytest.raises(auth.InvalidSignature) as refused:
        auth.verify(REFUSED[name], keys=KEYS, purpose="cable")
    assert refused.value.reason == "unauthorized"
    assert str(refused.value) in MESSAGES, "fixed messages, never the token"


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a--b"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(auth.InvalidSignature):
        auth.verify(value, keys=KEYS, purpose=None)


def test_a_purposed_token_is_refused_without_a_purpose() -> None:
    with pytest.raises(auth.InvalidSignature):
        auth.verify(TOKEN, keys=KEYS, purpose=None)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff",
        b'{"_rails": 1}',
        b'{"_rails": {"pur": null}}',
        b'{"_rails": {"exp": 5, "message": "MQ=="}}',
        b'{"_rails": {"exp": "2030-01-01T00:00:00", "message": "MQ=="}}',
    ],
)
def test_signed_garbage_is_refused(payload: bytes) -> None:
    """Only a key holder can sign these; still a typed error, no crash."""
    data = base64.b64encode(payload).decode()
    with pytest.raises(auth.InvalidSignature, match="malformed"):
        auth.verify(f"{data}--{hmac_hex(b'k', data)}", keys="k", purpose=None)


def test_rails_71_data_envelopes_are_read() -> None:
    envelope = {"_rails": {"data": {"user": 1}, "pur": "login"}}
    data = base64.b64encode(json.dumps(envelope).encode()).decode()
    token = f"{data}--{hmac_hex(b'k', data)}"
    assert auth.verify(token, keys="k", purpose="login") == {"user": 1}


@given(st.text() | st.binary().map(lambda b: b.decode("latin-1")))
def test_verify_raises_only_its_own_errors_on_any_string(text: str) -> None:
    with pytest.raises(auth.InvalidSignature):
        auth.verify(text, keys=KEYS, purpose="cable")


@given(st.data())
def test_every_mutation_of_a_token_is_refused(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(TOKEN) - 1))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    char = data.draw(st.characters())
    head, tail = TOKEN[:index], TOKEN[index:]
    mutated = {
        "replace": head + char + tail[1:],
        "insert": head + char + tail,
        "delete": head + tail[1:],
    }[kind]
    if mutated != TOKEN:
        with pytest.raises(auth.InvalidSignature):
            auth.verify(mutated, keys=KEYS, purpose="cable")


def test_turbo_stream_names_share_the_core_and_rotate() -> None:
    signed = turbo.StreamSigner("old").sign("room", 1)
    assert turbo.StreamSigner(["new", "old"]).verify(signed) == "room:1"
    assert auth.verify(signed, keys="old", purpose=None) == "room:1"
    assert signed.split("--")[0] == base64.b64encode(b'"room:1"').decode()


# -- Rails interop ----------------------------------------------------------------

RUBY = """
require "active_support"
require "active_support/message_verifier"
require "active_support/core_ext/numeric/time"
require "json"
v = ActiveSupport::MessageVerifier.new("shared", digest: "SHA256", serializer: JSON)
theirs = ARGV[0]
p v.verified(theirs, purpose: "login")
p v.verified(theirs, purpose: "other")
puts v.generate({"user" => 7}, purpose: "login", expires_in: 600)
"""


def test_rails_message_verifier_interop() -> None:
    if (
        shutil.which("ruby") is None
        or subprocess.run(
            ["ruby", "-e", 'require "active_support"'], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("ruby and activesupport (Debian packages) not installed")
    ours = auth.sign(
        {"user": 3}, keys="shared", purpose="login", expires_in=600, url_safe=False
    )
    result = subprocess.run(
        ["ruby", "-e", RUBY, ours],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    verified, other, theirs = result.stdout.splitlines()
    assert verified == '{"user"=>3}'
    assert other == "nil", "Rails refuses it for another purpose too"
    assert auth.verify(theirs, keys="shared", purpose="login") == {"user": 7}
    with pytest.raises(auth.InvalidSignature):
        auth.verify(theirs, keys="shared", purpose="other")


# -- cookies ------------------------------------------------------------------


def test_signed_cookies() -> None:
    clock = Clock()
    cookie = auth.SignedCookie("user_id", KEYS, expires_in=60, now=clock)
    assert cookie.purpose == "cookie.user_id"
    value = cookie.sign("ana")
    assert cookie.verify(value) == "ana"
    with pytest.raises(auth.InvalidSignature):
        auth.SignedCookie("admin_id", KEYS).verify(value)
    clock.time += 60
    with pytest.raises(auth.TokenExpired):
        cookie.verify(value)
    assert cookie.verify(cookie.sign("bob", expires_in=120)) == "bob"


def test_session_cookies_hide_the_loaders_errors() -> None:
    def loads(value: str) -> Any:
        if value == "old":
            raise auth.TokenExpired("session expired")
        raise RuntimeError(f"Signature {value!r} does not match")

    cookie = auth.SessionCookie("session", loads=loads)
    request = trio_cable.Request({"headers": [(b"cookie", b"session=s3cr3t")]})
    with pytest.raises(auth.InvalidSignature) as refused:
        cookie.read(request)
    assert "s3cr3t" not in str(refused.value)
    assert refused.value.__cause__ is None
    assert refused.value.__suppress_context__
    expired = trio_cable.Request({"headers": [(b"cookie", b"session=old")]})
    with pytest.raises(auth.TokenExpired):
        cookie.read(expired)
    assert cookie.read(trio_cable.Request({})) is None


def test_tokens_are_found_in_the_header_then_the_query() -> None:
    tokens = auth.SignedToken(KEYS)

    def request(headers: list[tuple[bytes, bytes]], query: bytes) -> Any:
        return trio_cable.Request({"headers": headers, "query_string": query})

    bearer = [(b"authorization", b"Bearer h")]
    assert tokens.token(request(bearer, b"token=q")) == "h"
    assert tokens.token(request([(b"authorization", b"Basic x")], b"token=q")) == "q"
    assert tokens.token(request([], b"")) is None
    assert tokens.token(request([], b"token=")) is None
    headerless = auth.SignedToken(KEYS, header=None, query_param=None)
    assert headerless.token(request(bearer, b"token=q")) is None


def test_headers_are_read_by_any_case_first_value_first() -> None:
    headers = trio_cable.Request(
        {
            "headers": [
                (b"host", b"h"),
                (b"X-Mixed", b"m"),  # not lower case, as ASGI asks: found anyway
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                ("x-str", "s"),  # str pairs (a scope made by hand)
            ]
        }
    ).headers
    assert headers["HOST"] == "h"
    assert headers.get("x-mixed") == "m"
    assert headers["cookie"] == "a=1"
    assert headers.getlist("Cookie") == ["a=1", "b=2"]
    assert headers.get("X-Str") == "s"
    assert headers.get("origin") is None
    assert headers.get("origin", "none") == "none"
    assert "host" in headers
    assert "origin" not in headers
    with pytest.raises(KeyError):
        headers["origin"]
    assert list(headers) == ["host", "x-mixed", "cookie", "x-str"]


# -- the connect hook, end to end ------------------------------------------------

USERS = {"ana": "Ana", "bob": None}
CLOCK = Clock()
TOKENS = auth.SignedToken(KEYS, expires_in=300, now=CLOCK)
COOKIE = auth.SignedCookie("user_id", KEYS, now=CLOCK)


class WhoAmI(Channel):
    async def subscribed(self) -> None:
        self.transmit({"user": self.current_user})


def make_cable(**options: Any) -> Cable:
    def find_user(user_id: str) -> str | None:  # a plain def: runs in a thread
        return USERS.get(user_id)

    cable = Cable(connect=auth.identify(TOKENS, COOKIE, load=find_user, **options))
    cable.channel(WhoAmI)
    return cable


async def identity(cable: Cable, **handshake: Any) -> Any:
    async with cable_test_client(cable, **handshake) as ws:
        await ws.subscribe("WhoAmI")
        return (await ws.receive())["message"]["user"]


async def refusal(cable: Cable, **handshake: Any) -> tuple[str, bool]:
    with pytest.raises(ConnectionRejected) as refused:
        await identity(cable, **handshake)
    return refused.value.reason, refused.value.reconnect


async def test_valid_credentials_identify_the_connection() -> None:
    cable = make_cable()
    assert await identity(cable, query={"token": TOKENS.sign("ana")}) == "Ana"
    bearer = {"Authorization": f"Bearer {TOKENS.sign('ana')}"}
    assert await identity(cable, headers=bearer) == "Ana"
    assert await identity(cable, cookies={"user_id": COOKIE.sign("ana")}) == "Ana"


async def test_refused_credentials_refuse_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    cable = make_cable()
    forged = auth.SignedToken("guessed").sign("ana")
    tampered = _flip(COOKIE.sign("ana"), 3)
    expired = TOKENS.sign("ana", expires_in=-1)
    wrong_use = COOKIE.sign("ana")  # a cookie's value replayed as a token
    unauthorized = ("unauthorized", False)
    assert await refusal(cable, query={"token": forged}) == unauthorized
    bearer = {"Authorization": f"Bearer {forged}"}
    assert await refusal(cable, headers=bearer) == unauthorized
    assert await refusal(cable, cookies={"user_id": tampered}) == unauthorized
    assert await refusal(cable, query={"token": wrong_use}) == unauthorized
    assert await refusal(cable, query={"token": "garbage"}) == unauthorized
    assert await refusal(cable, query={"token": expired}) == ("token_expired", False)
    for secret in (forged, tampered, expired, wrong_use):
        assert secret not in caplog.text
        assert secret.split("--")[1] not in caplog.text
    assert "unauthorized" in caplog.text, "refusals are logged, by reason"


async def test_a_refused_token_does_not_fall_through_to_a_valid_cookie() -> None:
    cable = make_cable()
    handshake = {
        "query": {"token": "forged"},
        "cookies": {"user_id": COOKIE.sign("ana")},
    }
    assert await refusal(cable, **handshake) == ("unauthorized", False)


async def test_no_identity() -> None:
    strict, lenient = make_cable(), make_cable(anonymous=True)
    assert await refusal(strict) == ("unauthorized", False)
    assert await identity(lenient) is None
    no_such_user = {"query": {"token": TOKENS.sign("bob")}}
    assert await refusal(strict, **no_such_user) == ("unauthorized", False)
    assert await identity(lenient, **no_such_user) is None
    expired = {"query": {"token": TOKENS.sign("ana", expires_in=-1)}}
    assert await refusal(lenient, **expired) == ("token_expired", False)


async def test_an_async_loader_and_no_loader() -> None:
    async def upper(value: str) -> str:
        return value.upper()

    loaded = Cable(connect=auth.identify(TOKENS, load=upper))
    loaded.channel(WhoAmI)
    assert await identity(loaded, query={"token": TOKENS.sign("ana")}) == "ANA"
    raw = Cable(connect=auth.identify(TOKENS))
    raw.channel(WhoAmI)
    assert await identity(raw, query={"token": TOKENS.sign({"id": 1})}) == {"id": 1}
    with pytest.raises(ValueError, match="source"):
        auth.identify()


def test_rejection_fits_the_error() -> None:
    assert isinstance(auth.rejection(auth.InvalidSignature("x")), Unauthorized)
    expired = auth.rejection(auth.TokenExpired("x"))
    assert (expired.reason, expired.reconnect) == ("token_expired", False)


# -- docs/security.md -------------------------------------------------------------


@pytest.mark.parametrize("test_name", doc_tests("security.md"))
async def test_security_doc_examples(test_name: str) -> None:
    doc = load_doc("security.md")  # a fresh cable per test
    await getattr(doc, test_name)()


async def test_the_doc_s_hand_written_hook() -> None:
    doc = load_doc("security.md")
    cable = Cable(connect=doc.authenticate)
    cable.channel(WhoAmI)
    token = doc.auth.sign({"user": "ana"}, keys=doc.KEYS, purpose="cable")
    assert await identity(cable, query={"token": token}) == "ana"
    assert await refusal(cable) == ("unauthorized", False)
    expired = doc.auth.sign(
        {"user": "a"}, keys=doc.KEYS, purpose="cable", expires_in=-1
    )
    assert await refusal(cable, query={"token": expired}) == ("token_expired", False)
