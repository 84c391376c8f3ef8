"""A real redis-server per test, on a free port, that tests can kill and restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from tests.helpers.ports import free_port
from tests.helpers.waiting import wait_until

if TYPE_CHECKING:
    from trio_cable import Cable
    from trio_cable._redis import RedisBridge


class RedisServer:
    """A redis-server process; ``url`` stays the same across restarts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="trio-cable-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def bridge_connections(self) -> list[dict[str, object]]:
        """CLIENT LIST entries of trio_cable's connections."""
        with self.client() as client:
            return [c for c in client.client_list() if c.get("name") == "trio_cable"]

    def channels(self) -> set[str]:
        with self.client() as client:
            return {c.decode() for c in client.pubsub_channels()}

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


#: The package's modules that run redis-py calls in threads.
BRIDGE_FILES = tuple(
    os.path.join("trio_cable", name)
    for name in (
        "_redis.py",
        "_redis_history.py",
        "_redis_io.py",
        "_redis_presence.py",
        "_redis_sessions.py",
    )
)


def redis_threads() -> list[threading.Thread]:
    """Threads executing redis-py or our Redis code right now."""
    frames = sys._current_frames()
    busy = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        while frame is not None:
            name = frame.f_code.co_filename
            if f"{os.sep}redis{os.sep}" in name or name.endswith(BRIDGE_FILES):
                busy.append(thread)
                break
            frame = frame.f_back
    return busy


async def redis_killed(server: RedisServer, cable: Cable) -> RedisBridge:
    """Kill ``server`` and wait until the bridge of ``cable`` (running)
    knows Redis is away; returns the bridge."""
    bridge = cable.bridge
    assert bridge is not None
    server.kill()
    await wait_until(lambda: not bridge.connected)
    return bridge


def assert_nothing_left(server: RedisServer) -> None:
    """After a cable stopped: no connection of ours in ``server``'s client
    list (it is started again if a test killed it) and no thread running
    redis-py or our Redis code."""
    if server.process is None:
        server.start()
    assert server.bridge_connections() == []
    assert redis_threads() == []


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required under CI")
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
