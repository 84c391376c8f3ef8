"""Headless Chromium for pytest-trio, through ``driver.mjs`` (playwright-core).

Needs Node, ``js/node_modules/playwright-core`` and Debian's ``chromium``
(never a playwright browser download). Without them the browser tests are
skipped, except under ``CI=true`` where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.interop.nodeclient import JS_DIR
from tests.interop.servers import ServerProcess

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.mjs"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def skip_unless_browser() -> None:
    """Skip without node or chromium; under ``CI=true`` fail instead."""
    missing = [
        what
        for what, found in (
            ("node", shutil.which("node")),
            ("chromium", Path(CHROMIUM).exists() or shutil.which("chromium")),
        )
        if not found
    ]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail(f"the browser tests need them in CI: {message}")
    pytest.skip(message)


def npm_ci() -> None:
    """Install js/'s pinned packages (playwright-core among them)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install js/node_modules")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)


class BrowserError(AssertionError):
    """A driver command failed (the message has the page's console)."""


class Browser:
    """One driver process; commands run in order, one reply each."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        self._next_id = 0
        self.console: list[str] = []

    async def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some()
            if not chunk:
                raise BrowserError("the browser driver exited")
            self._buffer += chunk
        line, _, rest = self._buffer.partition(b"\n")
        self._buffer = bytearray(rest)
        message: dict[str, Any] = json.loads(line)
        return message

    async def wait_event(self, name: str) -> None:
        while (await self._line()).get("event") != name:
            pass

    async def call(self, cmd: str, *, deadline: float = 10.0, **params: Any) -> Any:
        self._next_id += 1
        command = {"id": self._next_id, "cmd": cmd, **params}
        await self._stdin.send_all(json.dumps(command).encode() + b"\n")
        with trio.fail_after(deadline):
            while True:
                message = await self._line()
                if message.get("event") == "console":
                    self.console.append(f"[{message['page']}] {message['text']}")
                elif message.get("id") == self._next_id:
                    break
        if not message["ok"]:
            console = "\n".join(self.console[-30:])
            raise BrowserError(f"{cmd} failed: {message['error']}\nconsole:\n{console}")
        return message["value"]

    # -- conveniences -----------------------------------------------------------

    async def open(self, page: str, url: str) -> None:
        await self.call("newPage", page=page)
        await self.call("goto", page=page, url=url)

    async def evaluate(self, page: str, js: str) -> Any:
        return await self.call("evaluate", page=page, js=js)

    async def wait_for(self, page: str, js: str, timeout: float = 15.0) -> None:
        """Wait until the JavaScript expression ``js`` is truthy in ``page``."""
        await self.call(
            "waitFor", page=page, js=js, timeout=timeout * 1000, deadline=timeout + 5
        )


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    """Start Chromium (through the driver) and yield a :class:`Browser`.

    Resource handling: leaving the block asks the driver to close the
    browser, then kills the driver (and with it Chromium) if it lingers.
    """
    skip_unless_browser()
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        await trio.to_thread.run_sync(npm_ci)
    node = shutil.which("node")
    assert node is not None
    env = {**os.environ, "CHROMIUM": CHROMIUM}
    process = await trio.lowlevel.open_process(
        [node, str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        start_new_session=True,  # one killpg reaches Chromium too
    )
    try:
        browser = Browser(process)
        with trio.fail_after(20):
            await browser.wait_event("ready")
        yield browser
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                await process.stdin.send_all(b'{"id": 0, "cmd": "exit"}\n')  # type: ignore[union-attr]
                await process.wait()
            if process.returncode is None:
                os.killpg(process.pid, 9)
                await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()


class BrowserServer(ServerProcess):
    """``tests/browser/browser_app.py`` (the demo plus test pages) under
    Hypercorn, run as a user runs it; killable and restartable."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__("hypercorn", log_dir)

    def command(self) -> list[str]:
        return [
            *super().command()[:-3],
            "tests.browser.browser_app:app",
            "--bind",
            f"127.0.0.1:{self.port}",
        ]

    def http_url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def post(self, path: str, body: str) -> tuple[int, str]:
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        data = body.encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        async with stream:
            await stream.send_all(head.encode() + data)
            raw = bytearray()
            while chunk := await stream.receive_some():
                raw += chunk
        status_line, _, rest = bytes(raw).partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2].decode()
