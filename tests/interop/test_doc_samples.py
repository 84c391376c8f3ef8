"""The JavaScript samples of the README and the docs run as written.

The README's block runs in Node with the official ``@rails/actioncable``
client (the three shims of DESIGN.md, loaded with ``--import``) against the
README's own Python cable; ``docs/client-js.md``'s block runs in headless
Chromium as a page's module script, importing ``/cable.js`` from a real
Hypercorn serving ``CableApp`` (its calls fragment inside a page that
defines the names it leaves to the reader). The only edit is the port (the samples say
8000; the test uses a free one). Each must print what its comments say.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.browser.browser_driver import open_browser
from tests.helpers import LOSS_BOUND, code_blocks, load_doc, served, wait_until
from tests.interop.nodeclient import JS_DIR, ensure_node_modules, skip_unless_node
from trio_cable import ActionError, Cable, Channel
from trio_cable.asgi import CableApp

pytestmark = pytest.mark.node

SHIMS = Path(__file__).with_name("doc_sample_shims.mjs")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def test_every_js_sample_is_covered() -> None:
    # A new ```js block must get a runner here, not slip through untested.
    assert len(code_blocks("README.md", "js")) == 1
    assert len(code_blocks("client-js.md", "js")) == 2
    assert len(code_blocks("reliability.md", "js")) == 1
    for doc in ("guide.md", "scaling.md", "client.md", "cli.md", "security.md"):
        assert code_blocks(doc, "js") == [], doc


@asynccontextmanager
async def node_sample(
    tmp_path: Path, script: str, expected: bytes
) -> AsyncIterator[Callable[[], Awaitable[bytes]]]:
    """``script`` run by Node with the shims, from a directory that sees
    js/node_modules; yields a function that waits until its output ends
    with ``expected`` and returns all of it. The process is killed at the
    end of the block."""
    (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules")
    path = tmp_path / "sample.mjs"
    path.write_text(script)
    node = shutil.which("node")
    assert node is not None
    process = await trio.lowlevel.open_process(
        [node, "--import", SHIMS.as_uri(), str(path)],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    stdout = process.stdout

    async def output() -> bytes:
        out = b""
        with trio.fail_after(LOSS_BOUND):
            while not out.endswith(expected):
                chunk = await stdout.receive_some()
                assert chunk, f"node exited: {out!r}"
                out += chunk
        return out

    try:
        yield output
    finally:
        process.kill()
        await process.wait()
        await stdout.aclose()


async def test_readme_js_sample_prints_hello_with_the_official_client(
    tmp_path: Path,
) -> None:
    skip_unless_node()
    await trio.to_thread.run_sync(ensure_node_modules)
    readme = load_doc("README.md")
    (sample,) = code_blocks("README.md", "js")
    assert "127.0.0.1:8000" in sample
    async with served(readme.cable) as port:
        script = sample.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        async with node_sample(tmp_path, script, b"hello\n") as output:
            assert await output() == b"hello\n"


async def test_reliability_pubsub_sample_prints_hi_with_anycable_web(
    tmp_path: Path,
) -> None:
    """The ``$pubsub`` sample in Node (the shims, and the page's ``<body
    data-alerts-stream>`` given as ``document.body``) against the doc's own
    cable, with the name the doc's ``page_for(17)`` signs."""
    skip_unless_node()
    await trio.to_thread.run_sync(ensure_node_modules)
    doc = load_doc("reliability.md")
    (sample,) = code_blocks("reliability.md", "js")
    assert "127.0.0.1:8000" in sample
    async with served(doc.streams) as port:
        body = {"dataset": {"alertsStream": doc.page_for(17)}}
        page = f"globalThis.document.body = {json.dumps(body)};\n"
        script = page + sample.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        async with node_sample(tmp_path, script, b"hi\n") as output:
            await wait_until(lambda: doc.streams.hub.subscribers("alerts:17"))
            await doc.streams.broadcast("alerts:17", {"text": "hi"})
            assert await output() == b"hi\n"


def page_app(sample: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    body = f'<!doctype html>\n<script type="module">\n{sample}</script>\n'.encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@asynccontextmanager
async def page_in_chromium(
    cable: Cable, page: str, last_line: str
) -> AsyncIterator[list[str]]:
    """``page`` as a module script served with ``cable`` by a real Hypercorn
    (``CableApp``), open in Chromium until its console says ``last_line``;
    yields the console lines, then stops both."""
    app = CableApp(cable, page_app(page))
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: serve(app, config, task_status=task_status)
        )
        url = binds[0].replace("0.0.0.0", "127.0.0.1")
        async with open_browser() as browser:
            await browser.open("page", url + "/")
            console = browser.console
            with trio.fail_after(LOSS_BOUND):
                while f"[page] {last_line}" not in console:
                    await browser.evaluate("page", "1")  # collects console lines
            yield console
            assert not any("pageerror" in line for line in console), console
        nursery.cancel_scope.cancel()


async def test_client_js_sample_runs_in_chromium() -> None:
    readme = load_doc("README.md")  # its ChatChannel answers the sample
    sample, _calls = code_blocks("client-js.md", "js")
    async with page_in_chromium(readme.cable, sample, "hello"):
        # received() unsubscribed and disconnected: the server sees it.
        await wait_until(lambda: not readme.cable.connections)


CALLS_PAGE = """import { cable } from "/cable.js"
cable.connect()
const todos = cable.subscribe("TodoChannel", {})
const showSaved = (todo) => console.log(`saved ${todo.title} #${todo.id}`)
const showError = (reason, message) => console.log(`refused ${reason}`)
for (const title of ["milk", ""]) {
%s
}
"""


async def test_client_js_calls_sample_runs_in_chromium() -> None:
    """The calls fragment, in a page giving it ``todos``, ``showSaved`` and
    ``showError``: a call resolves with the action's return value, and an
    action's ``ActionError`` rejects it with its reason."""
    _, sample = code_blocks("client-js.md", "js")
    assert '{ title: "milk" }' in sample
    cable = Cable()

    @cable.channel
    class TodoChannel(Channel):
        async def add(self, data: dict[str, Any]) -> dict[str, Any]:
            if not data.get("title"):
                raise ActionError("invalid", "a todo needs a title")
            return {"id": 1, "title": data["title"]}

    page = CALLS_PAGE % sample.replace('{ title: "milk" }', "{ title }")
    async with page_in_chromium(cable, page, "refused invalid") as console:
        assert "[page] saved milk #1" in console
