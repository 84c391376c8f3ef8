"""Turbo Stream builders, signed stream names, Turbo::StreamsChannel, and the
packaged JavaScript client served by the ASGI app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import types
from pathlib import Path
from typing import Any

import pytest

from trio_cable import Cable, turbo
from trio_cable.asgi import CableApp
from trio_cable.testing import cable_test_client

ROOT = Path(__file__).resolve().parents[2]


# -- builders -------------------------------------------------------------------


@pytest.mark.parametrize("action", ["append", "prepend", "before", "after"])
def test_content_actions(action: str) -> None:
    build = getattr(turbo, action)
    assert build("messages", "<li>hi</li>") == (
        f'<turbo-stream action="{action}" target="messages">'
        "<template><li>hi</li></template></turbo-stream>"
    )


def test_replace_update_and_morph() -> None:
    assert turbo.replace("m1", "<p>x</p>") == (
        '<turbo-stream action="replace" target="m1"><template><p>x</p></template>'
        "</turbo-stream>"
    )
    assert turbo.update("count", "3") == (
        '<turbo-stream action="update" target="count"><template>3</template>'
        "</turbo-stream>"
    )
    assert turbo.morph("m1", "<p>y</p>") == (
        '<turbo-stream action="replace" target="m1" method="morph">'
        "<template><p>y</p></template></turbo-stream>"
    )
    assert turbo.morph("m1", "<p>y</p>", children_only=True).startswith(
        '<turbo-stream action="update" target="m1" method="morph">'
    )
    assert 'method="morph"' in turbo.update("m1", "z", method="morph")


def test_remove_and_refresh_have_no_template() -> None:
    assert turbo.remove("message_4") == (
        '<turbo-stream action="remove" target="message_4"></turbo-stream>'
    )
    assert turbo.refresh() == '<turbo-stream action="refresh"></turbo-stream>'
    assert turbo.refresh(request_id="r1", method="morph", scroll="preserve") == (
        '<turbo-stream action="refresh" request-id="r1" method="morph" '
        'scroll="preserve"></turbo-stream>'
    )


def test_targets_and_attributes_are_escaped() -> None:
    html = turbo.append('x" onclick="alert(1)', "<b>ok</b>")
    assert 'target="x&quot; onclick=&quot;alert(1)"' in html
    assert "<template><b>ok</b></template>" in html, "content is HTML, as given"
    assert turbo.remove(targets=".msg > li") == (
        '<turbo-stream action="remove" targets=".msg &gt; li"></turbo-stream>'
    )


def test_content_from_a_rendering_callable() -> None:
    def message(user: str, text: str) -> str:
        return f"<li>{user}: {text}</li>"

    html = turbo.append("messages", message, user="ana", text="hi")
    assert "<template><li>ana: hi</li></template>" in html

    class Markup:
        def __html__(self) -> str:
            return "<i>safe</i>"

    assert "<template><i>safe</i></template>" in turbo.update("x", lambda: Markup())
    with pytest.raises(TypeError):
        turbo.append("messages", "<li>", user="ana")


def test_custom_actions() -> None:
    assert turbo.stream("notify", "box", "<p>", attributes={"data-x": "<1>"}) == (
        '<turbo-stream action="notify" target="box" data-x="&lt;1&gt;">'
        "<template><p></template></turbo-stream>"
    )


# -- signed stream names --------------------------------------------------------


def test_signed_names_use_the_rails_message_verifier_format() -> None:
    signer = turbo.StreamSigner("k3y")
    signed = signer.sign("room", 42)
    data, digest = signed.split("--")
    assert base64.b64decode(data) == b'"room:42"'  # JSON, as Turbo's verifier
    assert digest == hmac.new(b"k3y", data.encode(), hashlib.sha256).hexdigest()
    assert signer.verify(signed) == "room:42" == turbo.stream_name("room", 42)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # another digest
        lambda s: base64.b64encode(b'"room:43"').decode() + s[s.index("--") :],
        lambda s: s.split("--")[0],  # no digest
        lambda s: "--" + s.split("--")[1],  # no data
        lambda s: 42,  # not a string
        lambda s: None,
    ],
)
def test_tampered_names_do_not_verify(tamper: Any) -> None:
    signer = turbo.StreamSigner(b"k3y")
    assert signer.verify(tamper(signer.sign("room:42"))) is None


def test_names_signed_with_another_key_do_not_verify() -> None:
    assert turbo.StreamSigner("a").verify(turbo.StreamSigner("b").sign("x")) is None
    with pytest.raises(ValueError, match="empty"):
        turbo.StreamSigner("")
    with pytest.raises(ValueError, match="one part"):
        turbo.stream_name()


def test_a_signed_non_string_does_not_verify() -> None:
    data = base64.b64encode(b'["room"]')
    forged = f"{data.decode()}--{hmac.new(b'k', data, hashlib.sha256).hexdigest()}"
    assert turbo.StreamSigner("k").verify(forged) is None


# -- Turbo::StreamsChannel ------------------------------------------------------


async def test_streams_channel_streams_only_signed_names() -> None:
    cable = Cable()
    signer = turbo.register_streams_channel(cable, "s3cret")
    signed = signer.sign("board", 7)
    async with cable_test_client(cable) as ws:
        reply = await ws.subscribe("Turbo::StreamsChannel", signed_stream_name=signed)
        assert reply["type"] == "confirm_subscription"
        await cable.broadcast("board:7", turbo.append("cards", "<li>new</li>"))
        frame = await ws.receive()
        assert frame["message"] == turbo.append("cards", "<li>new</li>")
        tampered = signed.replace("--", "x--", 1)
        bad = await ws.subscribe("Turbo::StreamsChannel", signed_stream_name=tampered)
        assert bad["type"] == "reject_subscription"
        unsigned = await ws.subscribe("Turbo::StreamsChannel", stream="board:7")
        assert unsigned["type"] == "reject_subscription"


async def test_streams_channel_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(turbo.SECRET_KEY_ENV, "from-env")
    signer = turbo.register_streams_channel(Cable())
    assert turbo.StreamSigner("from-env").verify(signer.sign("a")) == "a"
    monkeypatch.delenv(turbo.SECRET_KEY_ENV)
    one = turbo.register_streams_channel(Cable())
    two = turbo.register_streams_channel(Cable())
    assert two.verify(one.sign("a")) is None, "a random key per process"
    shared = turbo.StreamSigner("k")
    assert turbo.register_streams_channel(Cable(), shared) is shared
    cable = Cable()
    turbo.register_streams_channel(cable, "k")
    with pytest.raises(ValueError, match="registered"):
        turbo.register_streams_channel(cable, "k")


# -- docs/turbo.md ----------------------------------------------------------


def load_turbo_doc() -> types.ModuleType:
    """docs/turbo.md's Python blocks, run in order as one module."""
    path = ROOT / "docs" / "turbo.md"
    module = types.ModuleType("docs_turbo")
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)
    exec(compile("\n".join(blocks), str(path), "exec"), module.__dict__)
    return module


async def test_the_turbo_doc_examples() -> None:
    doc = load_turbo_doc()
    await doc.test_signed_stream_subscriptions()
    async with cable_test_client(doc.cable) as ws:
        await ws.subscribe("BoardChannel", board=1)
        await ws.perform("BoardChannel", "add", {"text": "<x>"}, board=1)
        assert "<b>None</b> &lt;x&gt;" in (await ws.receive())["message"]
        await doc.card_created(1, "two")
        assert (await ws.receive())["message"] == turbo.append("cards", "<li>two</li>")


# -- the packaged client -----------------------------------------------------


async def get(
    app: CableApp, path: str, method: str = "GET", headers: Any = ()
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


async def test_the_asgi_app_serves_the_client() -> None:
    app = CableApp(Cable())
    status, headers, body = await get(app, "/cable.js")
    assert status == 200
    assert headers[b"content-type"] == b"text/javascript; charset=utf-8"
    assert body == (ROOT / "trio_cable" / "static" / "cable.js").read_bytes()
    assert int(headers[b"content-length"]) == len(body)
    etag = headers[b"etag"]
    status, _, body = await get(app, "/cable.js", headers=[(b"if-none-match", etag)])
    assert (status, body) == (304, b"")
    status, headers, body = await get(app, "/cable.js", method="HEAD")
    assert (status, body) == (200, b"")
    status, headers, _ = await get(app, "/cable.js", method="POST")
    assert (status, headers[b"allow"]) == (405, b"GET, HEAD")
    assert (await get(CableApp(Cable(), client_path=None), "/cable.js"))[0] == 404
    moved = CableApp(Cable(), client_path="/assets/cable.js")
    assert (await get(moved, "/assets/cable.js"))[0] == 200
