"""Run ``tests/apps/chat_app.py`` as a real server in a separate process.

Three kinds, all serving the same cable at ``ws://127.0.0.1:PORT/cable``:

* ``hypercorn``: the Hypercorn CLI exactly as a user runs it,
  ``python -m hypercorn --worker-class trio tests.apps.chat_app:app --bind
  127.0.0.1:PORT`` (a supervisor process plus one spawned worker); the
  chat app's HTTP side (``/broadcast``, ``/stats``) is on the same port.
* ``direct``: ``python -m tests.apps.chat_app --transport direct --port PORT
  --http-port H``, the cable on :func:`~trio_cable.serve_cable`'s direct
  transport (its default) and the HTTP side on a second port.
* ``trio-websocket``: the same with ``--transport trio-websocket``.

A :class:`ServerProcess` can be SIGKILLed and started again on the same
ports. Resource handling: :meth:`ServerProcess.stop` (also on leaving the
``with`` block) kills the whole process group, reaps the process it started
and waits until every other process of the group is dead, so no server
process outlives a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal
from urllib.parse import quote

import trio

from tests.helpers.ports import free_port

ROOT: Final = Path(__file__).resolve().parents[2]
APP_MODULE: Final = "tests.apps.chat_app"

ServerKind = Literal["hypercorn", "direct", "trio-websocket"]
SERVER_KINDS: Final[tuple[ServerKind, ...]] = ("hypercorn", "direct", "trio-websocket")
#: The kinds that run chat_app's own serve_cable, one per socket transport.
SERVE_CABLE_KINDS: Final[tuple[ServerKind, ...]] = ("direct", "trio-websocket")


class ServerError(RuntimeError):
    """The server process did not come up (the message has its log)."""


def _group_members(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` (zombies included), via /proc."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the fields after "(comm)": state, ppid, pgrp, ...
            fields = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def _wait_dead(pid: int, deadline: float) -> None:
    """Wait until ``pid`` (not our child) is dead: gone, or a zombie, which
    its new parent (init) reaps."""
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return
        time.sleep(0.01)
    raise ServerError(f"process {pid} survived SIGKILL")


def _parse_response(raw: bytes) -> tuple[int, Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


def _request_bytes(method: str, path: str, port: int, body: bytes) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class ServerProcess:
    """One chat_app server process of a given kind, on fixed ports.

    ``url`` is the cable's WebSocket URL. The HTTP side is reached with
    :meth:`broadcast` and :meth:`stats` (async) or :meth:`get_stats_sync`.
    """

    def __init__(
        self, kind: ServerKind, log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.kind = kind
        #: Environment variables set for the server besides ours (such as
        #: ``TRIO_CABLE_REDIS_URL``).
        self.env = dict(env or {})
        self.port = free_port()
        self.http_port = self.port
        while kind != "hypercorn" and self.http_port == self.port:
            self.http_port = free_port()
        self.log_path = log_dir / f"{kind}-{self.port}.log"
        self.starts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"<ServerProcess {self.kind} port={self.port}>"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/cable"

    def command(self) -> list[str]:
        if self.kind == "hypercorn":
            bind = f"127.0.0.1:{self.port}"
            app = f"{APP_MODULE}:app"
            return [
                sys.executable,
                "-m",
                "hypercorn",
                "--worker-class",
                "trio",
                app,
                "--bind",
                bind,
            ]
        ports = ["--port", str(self.port), "--http-port", str(self.http_port)]
        return [sys.executable, "-m", APP_MODULE, "--transport", self.kind, *ports]

    # -- lifetime ----------------------------------------------------------------

    def start(self) -> None:
        """Start the process (returns at once; see :meth:`wait_ready_sync`)."""
        if self.alive():
            raise ServerError(f"{self} is already running")
        self._log = self.log_path.open("ab")
        self._log.write(f"--- start #{self.starts + 1}: {self.command()}\n".encode())
        self._log.flush()
        # Its own session, so one killpg() reaches Hypercorn's worker too.
        self._process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        self.starts += 1

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL every process of the server; reap ours, and wait until the
        rest (Hypercorn's worker, multiprocessing's helper) are dead too."""
        process, self._process = self._process, None
        if process is not None:
            deadline = time.monotonic() + 10
            members = _group_members(process.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            for pid in {*members, *_group_members(process.pid)} - {process.pid}:
                _wait_dead(pid, deadline)
        if self._log is not None:
            self._log.close()
            self._log = None

    stop = kill

    async def terminate(self, timeout: float = 10.0) -> int:
        """Graceful stop: SIGTERM to the main process only (what ``docker
        stop`` does; Hypercorn's supervisor then shuts its worker down).
        Returns the exit code; whatever is left is then killed and reaped."""
        process = self._process
        assert process is not None, f"{self} is not running"
        process.send_signal(signal.SIGTERM)
        try:
            with trio.fail_after(timeout):
                while process.poll() is None:
                    await trio.sleep(0.02)  # polling a process we do not own in trio
            return process.returncode
        finally:
            self.kill()

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
            self.wait_ready_sync()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- readiness -----------------------------------------------------------------

    def _check_alive(self) -> None:
        if not self.alive():
            raise ServerError(f"{self} exited during startup\n{self.log_tail()}")

    def wait_ready_sync(self, timeout: float = 20.0) -> None:
        """Block until the server answers ``GET /stats`` with the cable running
        (and, for the serve_cable kinds, its WebSocket port accepts connections)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError, IndexError):
                if self.get_stats_sync()["running"] and self._accepts_sync():
                    return
            time.sleep(0.05)
        raise ServerError(f"{self} not ready after {timeout}s\n{self.log_tail()}")

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """:meth:`wait_ready_sync` without blocking the trio thread."""
        with trio.fail_after(timeout):
            while True:
                self._check_alive()
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if (await self.stats())["running"]:
                        await (
                            await trio.open_tcp_stream("127.0.0.1", self.port)
                        ).aclose()
                        return
                await trio.sleep(0.05)  # polling another process: no event to wait on

    def _accepts_sync(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "server log:\n" + "\n".join(text.splitlines()[-lines:])

    # -- the HTTP side ---------------------------------------------------------------

    def get_stats_sync(self) -> dict[str, Any]:
        with socket.create_connection(("127.0.0.1", self.http_port), timeout=2) as sock:
            sock.sendall(_request_bytes("GET", "/stats", self.http_port, b""))
            raw = bytearray()
            while chunk := sock.recv(65536):
                raw += chunk
        status, payload = _parse_response(bytes(raw))
        if status != 200:
            raise ValueError(f"GET /stats: HTTP {status}")
        result: dict[str, Any] = payload
        return result

    async def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One HTTP request to the server's chat_app HTTP side."""
        data = b"" if body is None else json.dumps(body).encode()
        stream = await trio.open_tcp_stream("127.0.0.1", self.http_port)
        async with stream:
            await stream.send_all(_request_bytes(method, path, self.http_port, data))
            raw = bytearray()
            while chunk := await stream.receive_some():
                raw += chunk
        return _parse_response(bytes(raw))

    async def stats(self) -> dict[str, Any]:
        """``GET /stats``: the chat app's event counts, streams, connections."""
        status, payload = await self.http("GET", "/stats")
        if status != 200:
            raise ValueError(f"GET /stats: HTTP {status}")
        result: dict[str, Any] = payload
        return result

    async def broadcast(self, stream: str, data: Any) -> int:
        """Broadcast from outside any channel (``await cable.broadcast`` in
        the server); returns how many subscribers it was handed to."""
        status, payload = await self.http(
            "POST", f"/broadcast?stream={quote(stream)}", data
        )
        assert status == 200, (status, payload)
        delivered: int = payload["delivered"]
        return delivered

    async def wait_for_event_count(
        self, key: str, count: int, timeout: float = 15.0
    ) -> None:
        """Wait until the chat app counted ``key`` (e.g. ``"unsubscribed
        <identifier>"``) ``count`` times."""
        with trio.fail_after(timeout):
            while (await self.stats())["events"].get(key, 0) < count:
                await trio.sleep(0.02)  # polling another process
