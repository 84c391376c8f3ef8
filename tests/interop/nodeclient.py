"""Drive the official ``@rails/actioncable`` client (in Node) from pytest-trio.

``ac_driver.mjs`` runs the client and speaks newline-delimited JSON: commands
in on stdin, events out on stdout (its header lists both). Typical use::

    skip_unless_node()
    async with open_ac_client() as ac:
        await ac.send({"cmd": "connect", "url": url})
        await ac.send({"cmd": "subscribe", "key": "k1",
                       "channel": "ChatChannel", "params": {"room": "general"}})
        await ac.expect({"event": "connected", "key": "k1"})
        await ac.assert_no_event({"event": "uncaught"}, within=0.5)

The driver never blocks on a full stdout pipe (Node queues the writes), so
events are read only while a test waits in `expect` or `assert_no_event`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

Event = dict[str, Any]
Match = Mapping[str, object] | Callable[[Event], bool]

JS_DIR = Path(__file__).resolve().parents[2] / "js"
DRIVER = Path(__file__).resolve().with_name("ac_driver.mjs")
#: The driver of AnyCable's own client, ``@anycable/web`` (same line protocol).
ANYCABLE_DRIVER = Path(__file__).resolve().with_name("anycable_driver.mjs")


def node_available() -> bool:
    return shutil.which("node") is not None


def skip_unless_node() -> None:
    """Skip the calling test without Node; under ``CI=true`` fail instead."""
    if node_available():
        return
    if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
        pytest.fail("Node.js is required for the interop tests in CI")
    pytest.skip("Node.js is not installed")


def ensure_node_modules() -> None:
    """Install the pinned npm packages in ``js/`` (``npm ci``) if missing."""
    if (JS_DIR / "node_modules" / "@rails" / "actioncable").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install js/node_modules")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)


def _matches(match: Match, event: Event) -> bool:
    if callable(match):
        return match(event)
    return all(key in event and event[key] == value for key, value in match.items())


class NodeClient:
    """One running driver process; see `open_ac_client`."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._partial = bytearray()
        self._eof = False
        #: Every event read so far, in order (for debugging and reports).
        self.history: list[Event] = []
        #: Events read but not yet returned by `expect`.
        self.pending: list[Event] = []

    async def send(self, command: Mapping[str, object]) -> None:
        """Send one command, e.g. ``{"cmd": "perform", "key": "k1", ...}``."""
        line = json.dumps(command, separators=(",", ":")) + "\n"
        await self._stdin.send_all(line.encode())

    async def expect(self, match: Match, timeout: float = 15.0) -> Event:
        """Return (and consume) the first event that matches.

        *match* is a predicate or a dict whose items must all be equal to the
        event's. Earlier non-matching events stay buffered for later calls.
        Raises AssertionError after *timeout* seconds or if the driver exits.
        """
        with trio.move_on_after(timeout):
            while True:
                for index, event in enumerate(self.pending):
                    if _matches(match, event):
                        return self.pending.pop(index)
                if self._eof:
                    raise AssertionError(self._report(f"driver exited; wanted {match}"))
                await self._read_more()
        raise AssertionError(self._report(f"no event matching {match} in {timeout}s"))

    async def assert_no_event(self, match: Match, within: float = 1.0) -> None:
        """Fail if a matching event is buffered or arrives within *within* seconds.

        Returns early if the driver exits. ``within=0`` checks only the events
        read so far (they are read lazily), so prefer a short positive window.
        """
        with trio.move_on_after(within):
            while True:
                for event in self.pending:
                    if _matches(match, event):
                        raise AssertionError(self._report(f"unexpected {event}"))
                if self._eof:
                    return
                await self._read_more()

    async def wait_exited(self, timeout: float = 15.0) -> int:
        """Wait for the driver to exit (e.g. after ``{"cmd": "exit"}``)."""
        with trio.fail_after(timeout):
            return await self._process.wait()

    async def _read_more(self) -> None:
        # Cancellation-safe: receive_some either returns data or loses none.
        chunk = await self._stdout.receive_some()
        if not chunk:
            self._eof = True
            return
        self._partial += chunk
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            if line.strip():
                event = json.loads(line)
                self.history.append(event)
                self.pending.append(event)

    def _report(self, problem: str) -> str:
        unread = "\n  ".join(json.dumps(event) for event in self.pending)
        return f"{problem}\nunconsumed events:\n  {unread or '(none)'}"


@asynccontextmanager
async def open_ac_client(
    *, debug: bool = False, ready_timeout: float = 10.0, driver: Path = DRIVER
) -> AsyncIterator[NodeClient]:
    """Start ``node ac_driver.mjs`` (or another ``driver``, e.g.
    :data:`ANYCABLE_DRIVER`) and wait for its ``ready`` event.

    With *debug* (or env ``AC_DEBUG=1``) the client's logger writes to
    stderr, which pytest shows for failed tests.

    Resource handling: leaving the block kills the process and waits for it,
    also on error or cancellation.
    """
    if not (JS_DIR / "node_modules" / "@rails" / "actioncable").is_dir():
        await trio.to_thread.run_sync(ensure_node_modules)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("Node.js is not installed")
    env = dict(os.environ)
    if debug:
        env["AC_DEBUG"] = "1"
    process = await trio.lowlevel.open_process(
        [node, str(driver)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        client = NodeClient(process)
        await client.expect({"event": "ready"}, timeout=ready_timeout)
        yield client
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()
