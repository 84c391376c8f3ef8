"""Property tests of the frame parser: whatever a client sends, it either
parses into a command or raises :class:`~trio_cable.ProtocolError`.

Inputs are arbitrary text and bytes, arbitrary JSON, and valid frames
mutated (bytes flipped, cut, inserted; fields swapped for other JSON
types; huge numbers, deep nesting, invalid UTF-8, lone surrogates). For
every input the parser either returns a :data:`~trio_cable.protocol.codec.Command`
whose identifier is the exact string the frame carried, or raises
``ProtocolError`` with a known reason; and whatever the server would
answer (the confirmation or the error frame) can go on the wire as UTF-8.

Runs derandomized with no example database, so CI is reproducible.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_cable import ProtocolError
from trio_cable.protocol.codec import (
    DEFAULT_LIMITS,
    Limits,
    Message,
    Subscribe,
    Unsubscribe,
    encode_confirm,
    encode_error,
    json_depth,
    parse_frame,
)

REASONS = {
    "invalid_json",
    "unknown_command",
    "invalid_request",
    "invalid_action",
    "identifier_too_large",
    "json_too_deep",
}

#: Limits no generated valid frame reaches.
ROOMY = Limits(max_identifier_bytes=10**6, max_json_depth=16)

# Derandomized, no database: the same examples on every run and machine.
FAST = settings(
    database=None,
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check(frame: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Parse ``frame`` and check the parser's contract; return the command
    (or None when it was refused)."""
    try:
        command = parse_frame(frame, limits)
    except ProtocolError as exc:
        check_error(exc)
        return None
    assert type(command) in (Subscribe, Unsubscribe, Message)
    # The identifier is the exact string the frame carried: never re-encoded.
    sent = json.loads(frame)["identifier"]
    assert type(command.identifier) is str
    assert command.identifier == sent
    confirm = json.loads(encode_confirm(command.identifier).encode())
    assert confirm["identifier"] == sent
    if isinstance(command, Subscribe):
        assert len(command.identifier) <= limits.max_identifier_bytes
        decoded = json.loads(command.identifier)
        assert command.channel == decoded.pop("channel")
        assert isinstance(command.channel, str)
        assert command.channel
        assert command.params == decoded
        assert json_depth(command.params, limits.max_json_depth) <= (
            limits.max_json_depth
        )
    elif isinstance(command, Message):
        assert isinstance(command.data, dict)
        assert command.action == command.data.get("action", "receive")
        assert isinstance(command.action, str)
    return command


def check_error(exc: ProtocolError) -> None:
    assert exc.reason in REASONS, exc.reason
    assert isinstance(exc.message, str)
    assert exc.identifier is None or isinstance(exc.identifier, str)
    # The error frame the server would send is valid UTF-8 JSON.
    wire = encode_error(exc.reason, exc.message, exc.identifier).encode()
    assert json.loads(wire)["reason"] == exc.reason


# -- strategies ------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
params = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k != "channel"), json_values, max_size=4
)
channels = st.sampled_from(["Room", "ChatChannel", "É", "a" * 50]) | st.text(
    min_size=1, max_size=10
)


@st.composite
def identifiers(draw: st.DrawFn) -> str:
    """Identifiers as different clients write them: key order, spacing and
    escaping vary, so the string is all that identifies a subscription."""
    fields = {"channel": draw(channels), **draw(params)}
    keys = draw(st.permutations(list(fields)))
    return json.dumps(
        {k: fields[k] for k in keys},
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )


@st.composite
def valid_frames(draw: st.DrawFn) -> dict[str, Any]:
    command = draw(st.sampled_from(["subscribe", "unsubscribe", "message"]))
    frame: dict[str, Any] = {"command": command, "identifier": draw(identifiers())}
    if command == "message":
        # "action", if there, is a string: any other value is invalid_action
        # (which hypothesis once found by drawing the key at random).
        keys = st.text(max_size=8).filter(lambda k: k != "action")
        data = draw(st.dictionaries(keys, json_values, max_size=4))
        if draw(st.booleans()):
            data["action"] = draw(st.text(max_size=10))
        frame["data"] = json.dumps(data)
    return frame


def encode(frame: dict[str, Any], ascii_only: bool = False) -> str:
    return json.dumps(frame, ensure_ascii=ascii_only)


# -- arbitrary input ----------------------------------------------------------------


@FAST
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@FAST
@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FAST
@given(json_values)
def test_arbitrary_json_as_the_frame(value: Any) -> None:
    assert check(json.dumps(value)) is None  # no object with a command


@FAST
@given(
    command=st.sampled_from(["subscribe", "unsubscribe", "message"]) | json_values,
    identifier=json_values,
    data=json_values,
)
def test_arbitrary_json_in_each_field(command: Any, identifier: Any, data: Any) -> None:
    frame = {"command": command, "identifier": identifier, "data": data}
    check(json.dumps(frame))
    # ...and JSON-encoded, as the protocol wants identifier and data
    frame.update(identifier=json.dumps(identifier), data=json.dumps(data))
    check(json.dumps(frame))


@FAST
@given(valid_frames(), st.booleans())
def test_valid_frames_parse_with_the_exact_identifier(
    frame: dict[str, Any], ascii_only: bool
) -> None:
    command = check(encode(frame, ascii_only), ROOMY)
    assert command is not None
    assert command.identifier == frame["identifier"]


# -- mutations of valid frames --------------------------------------------------------


@FAST
@given(valid_frames(), st.data())
def test_byte_flips(frame: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(encode(frame).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    check(bytes(raw))
    check(raw.decode("utf-8", "replace"))


@FAST
@given(valid_frames(), st.data())
def test_truncation(frame: dict[str, Any], data: st.DataObject) -> None:
    text = encode(frame)
    cut = data.draw(st.integers(0, len(text) - 1))
    assert check(text[:cut]) is None  # no proper prefix of an object parses
    check(text.encode()[:cut])  # may split a multi-byte character


@FAST
@given(valid_frames(), st.data())
def test_insertion(frame: dict[str, Any], data: st.DataObject) -> None:
    raw = encode(frame).encode()
    i = data.draw(st.integers(0, len(raw)))
    junk = data.draw(
        st.binary(min_size=1, max_size=8)
        | st.sampled_from([b"\\", b'"', b"{", b"]", b",", b"\x00", b"\xff", b"\\u"])
    )
    check(raw[:i] + junk + raw[i:])


@FAST
@given(valid_frames(), st.sampled_from(["command", "identifier", "data"]), json_values)
def test_type_swaps(frame: dict[str, Any], key: str, value: Any) -> None:
    frame[key] = value
    check(encode(frame))
    del frame[key]
    check(encode(frame))


HUGE = ["1e400", "-1e400", "1" + "0" * 5000, "-" + "9" * 5000, "NaN", "Infinity"]


@FAST
@given(valid_frames(), st.sampled_from(HUGE), st.sampled_from(["params", "data"]))
def test_huge_numbers(frame: dict[str, Any], number: str, where: str) -> None:
    if where == "params":
        ident = frame["identifier"]
        frame["identifier"] = ident[:-1] + f', "n": {number}}}'
    else:
        frame["command"] = "message"
        frame["data"] = f'{{"action": "speak", "n": {number}}}'
    check(encode(frame))
    # and a bare number where a string belongs (not valid in strict JSON)
    check(encode(frame).replace('"command": "', f'"x": {number}, "command": "'))


@FAST
@given(
    valid_frames(),
    st.integers(1, 40_000),
    st.sampled_from(["[", '{"a":']),
    st.sampled_from(["top", "identifier", "data"]),
)
def test_deep_nesting(
    frame: dict[str, Any], depth: int, opener: str, where: str
) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    if where == "top":
        check(f'{{"command": "message", "x": {nested}}}')
        check(nested)
    elif where == "identifier":
        frame["command"] = "subscribe"
        frame["identifier"] = f'{{"channel": "Room", "p": {nested}}}'
        check(encode(frame), Limits(max_identifier_bytes=10**6, max_json_depth=16))
    else:
        frame["command"] = "message"
        frame["data"] = f'{{"action": "speak", "p": {nested}}}'
        check(encode(frame))


INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xe2\x28\xa1", b"\xed\xa0\x80", b"\xf8\x88"]


@FAST
@given(valid_frames(), st.data())
def test_invalid_utf8(frame: dict[str, Any], data: st.DataObject) -> None:
    raw = encode(frame).encode()
    i = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.sampled_from(INVALID_UTF8))
    check(raw[:i] + junk + raw[i:])
    # the same bytes as a str decoded with surrogateescape (lone surrogates)
    check((raw[:i] + junk + raw[i:]).decode("utf-8", "surrogateescape"))


SURROGATES = ["\\ud800", "\\udfff", "\\ud83d", "\\ude00x", "\\ud800\\ud800"]


@FAST
@given(valid_frames(), st.sampled_from(SURROGATES), st.booleans())
def test_lone_surrogate_escapes(
    frame: dict[str, Any], escape: str, in_identifier: bool
) -> None:
    """``"\\ud800"`` is valid JSON for a string no UTF-8 can hold: whatever
    the server echoes of it must still encode (``check`` encodes it)."""
    if in_identifier:
        # once escaped: the identifier string itself holds a surrogate
        text = encode(frame)
        text = text.replace('"identifier": "{', f'"identifier": "{escape}{{', 1)
        check(text)
        # twice escaped: a param value holds it
        frame["identifier"] = frame["identifier"][:-1] + f', "s": "{escape}"}}'
        frame["identifier"] = frame["identifier"].replace("{,", "{", 1)
        command = check(encode(frame))
        if isinstance(command, Subscribe):
            assert "s" in command.params
    else:
        frame["command"] = "message"
        frame["data"] = f'{{"action": "speak{escape}", "m": "{escape}"}}'
        check(encode(frame))


@FAST
@given(valid_frames(), st.integers(0, 64), st.integers(0, 4))
def test_tight_limits(frame: dict[str, Any], size: int, depth: int) -> None:
    """Small limits: identifier_too_large and json_too_deep, never a crash,
    and no parsed command exceeds them (``check`` asserts it)."""
    check(encode(frame), Limits(max_identifier_bytes=size, max_json_depth=depth))


def test_known_answers() -> None:
    """A few fixed inputs, one per reason, so a regression names itself."""
    ident = '{"channel":"Room"}'
    cases: list[tuple[str | bytes, str]] = [
        (b"\xff\xfe", "invalid_json"),
        ("[1,", "invalid_json"),
        ("[]", "invalid_json"),
        ('{"command":"dance","identifier":"x"}', "unknown_command"),
        ('{"command":"subscribe"}', "invalid_request"),
        ('{"command":"subscribe","identifier":"[]"}', "invalid_request"),
        ('{"command":"subscribe","identifier":"{\\"channel\\":1}"}', "invalid_request"),
        ('{"command":"subscribe","identifier":"{}"}', "invalid_request"),
        (json.dumps({"command": "message", "identifier": ident}), "invalid_request"),
        (
            json.dumps({"command": "message", "identifier": ident, "data": "[]"}),
            "invalid_json",
        ),
        (
            json.dumps(
                {"command": "message", "identifier": ident, "data": '{"action":1}'}
            ),
            "invalid_action",
        ),
        (
            json.dumps({"command": "subscribe", "identifier": '{"a":"1' + "0" * 5000}),
            "identifier_too_large",
        ),
        (
            json.dumps(
                {
                    "command": "message",
                    "identifier": ident,
                    "data": '{"n":' + "1" * 5000 + "}",
                }
            ),
            "invalid_json",  # past Python's 4300-digit int limit
        ),
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),
    ]
    for frame, reason in cases:
        with pytest.raises(ProtocolError) as info:
            parse_frame(frame)
        assert info.value.reason == reason, (frame[:80], info.value)


def test_nesting_around_the_recursion_limit() -> None:
    """Depths where the JSON parser still succeeds but a later walk or
    repr() of the value (an error message) might not."""
    for depth in range(0, 1200, 3):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            nested = opener * depth + "1" + closer * depth
            check(f'{{"command": {nested}}}')
            check(json.dumps({"command": "message", "identifier": "x", "data": nested}))
            ident = '{"channel": "Room", "p": ' + nested + "}"
            check(json.dumps({"command": "subscribe", "identifier": ident}), ROOMY)
