"""Real Hypercorn processes: ``hypercorn --worker-class trio APP`` on a
free port, for tests that need the server in a process of its own (its
signals, its memory)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from tests.helpers.wsclient import RawClient

__all__ = ["get_json", "hypercorn_process", "read_all", "rss_of"]


@asynccontextmanager
async def hypercorn_process(
    app: str, *args: str
) -> AsyncIterator[tuple[trio.Process, int]]:
    """``hypercorn --worker-class trio *args app`` (``app``: ``PATH:ATTR``)
    on a free port; yields the process (the master, in its own process
    group) and the port. Killed with its worker if still running at the
    end. The environment is this process's."""
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--bind",
        "127.0.0.1:0",
        *args,
        app,
    ]
    proc = await trio.lowlevel.open_process(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # the master and its worker: one group
    )
    try:
        assert proc.stderr is not None
        log = b""
        with trio.fail_after(15):
            while (found := re.search(rb"Running on http://[\d.]+:(\d+)", log)) is None:
                chunk = await proc.stderr.receive_some(4096)
                assert chunk, f"hypercorn did not start:\n{log.decode()}"
                log += chunk
        yield proc, int(found.group(1))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await proc.wait()


async def read_all(stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
    """Everything ``stream`` gives until EOF, into ``into``."""
    assert stream is not None
    while chunk := await stream.receive_some(65536):
        into += chunk


def rss_of(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def get_json(port: int, path: str) -> Any:
    """``GET path`` on ``port`` (one connection, closed after): the JSON
    body of a 200 answer."""
    client = await RawClient.open(port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        await client.send_bytes(f"{request}Connection: close\r\n\r\n".encode())
        raw = await client.read_to_eof()
    finally:
        await client.aclose()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)
