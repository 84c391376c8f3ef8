"""The benchmark's processes: servers, load generators, Redis, the control socket.

Every process started here is stopped by its context manager (terminate,
then kill after 5 s), whatever happens inside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio_websocket
from bench_common import CONTROL_CHANNEL

HERE = Path(__file__).resolve().parent
NODE_REF = HERE / "node-ref"
PROTOCOL = "actioncable-v1-json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

REDIS_KIND = "cable-direct-redis"  # run.py's cross-process case
# every server kind, in the order of the report's rows
LABELS = {
    "cable-direct": "trio_cable / direct (default)",
    "cable-trio-websocket": "trio_cable / trio-websocket",
    "cable-hypercorn": "trio_cable / Hypercorn",
    "node-ws": "Node ws reference",
    "bare-trio-websocket": "bare trio-websocket loop",
    "bare-hypercorn": "bare Hypercorn loop",
    REDIS_KIND: "trio_cable / direct, two processes through Redis",
}
SERVERS = tuple(kind for kind in LABELS if kind != REDIS_KIND)
# run.py's default: every trio_cable transport and the Node ceiling
DEFAULT_SERVERS = ("cable-direct", "cable-trio-websocket", "cable-hypercorn", "node-ws")


def server_command(kind: str, port: int) -> list[str]:
    if kind == "node-ws":
        return [
            node_binary(),
            "--expose-gc",  # so the driver's "gc" action can collect first
            str(NODE_REF / "server.mjs"),
            "--port",
            str(port),
        ]
    module = "bench_app" if kind.startswith("cable-") else "bare_app"
    if kind in ("cable-direct", "cable-trio-websocket"):
        transport = kind.removeprefix("cable-")
        return [
            sys.executable,
            str(HERE / "bench_app.py"),
            *("--port", str(port), "--transport", transport),
        ]
    if kind == "bare-trio-websocket":
        return [sys.executable, str(HERE / "bare_app.py"), "--port", str(port)]
    # --workers 0: serve in this very process (no supervisor), so its PID
    # is the one measured; a large backlog so connection bursts are not
    # dropped and retried (trio-websocket's listener gets the kernel max).
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class",
        "trio",
        "--workers",
        "0",
        "--backlog",
        "4096",
        "--bind",
        f"127.0.0.1:{port}",
        f"{module}:app",
    ]


# -- processes -------------------------------------------------------------------


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed for the load generator")
    return node


def ensure_node_ref() -> None:
    """``npm ci`` in node-ref/ unless its ``ws`` is installed: the load
    generator and the Node reference server both use it."""
    if (NODE_REF / "node_modules" / "ws" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install node-ref's ws package")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_REF, check=True, timeout=300
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs have spent running processes since boot
    (user + nice + system in /proc/stat; interrupts are apart)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2]) / CLOCK_TICKS


def machine_irq_seconds() -> float:
    """CPU-seconds spent in interrupts and softirqs (loopback TCP's
    receive path runs there, charged to no process)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[5] + fields[6]) / CLOCK_TICKS


async def wait_for_quiet(limit: float) -> float:
    """Wait (at most ``limit`` s) until other processes use under 15% of a
    CPU: the server and load generators share the machine's CPUs with
    whatever else runs. Returns the last background load measured."""
    deadline = time.monotonic() + limit
    while True:
        before = machine_busy_seconds()
        await trio.sleep(1.0)
        load = machine_busy_seconds() - before
        if load < 0.15 or time.monotonic() >= deadline:
            if load >= 0.15:
                print(f"   (busy machine: {load:.0%} of a CPU used by others)")
            return load
        await trio.sleep(4.0)


async def stop_process(proc: trio.Process, *, group: bool = False) -> None:
    """Terminate, then kill after 5 s; never leaves the process behind."""
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            _signal(proc, signal.SIGTERM, group)
            with trio.move_on_after(5):
                await proc.wait()
        if proc.returncode is None:
            _signal(proc, signal.SIGKILL, group)
            await proc.wait()
        elif group:  # the leader is gone; take any child with it
            _signal(proc, signal.SIGKILL, group)


def _signal(proc: trio.Process, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass


@asynccontextmanager
async def server_process(
    kind: str,
    port: int,
    log_dir: Path,
    env_extra: dict[str, str],
    *,
    wrapper: Sequence[str] = (),
    ready_timeout: float = 30.0,
) -> AsyncIterator[trio.Process]:
    """The server of ``kind`` on ``port``, listening; ``wrapper`` prefixes
    its command (``valgrind --tool=callgrind …``, under which it starts
    slowly: give it a longer ``ready_timeout``)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        **env_extra,
    )
    log_path = log_dir / f"server-{kind}-{port}.log"
    with open(log_path, "wb") as log:  # noqa: ASYNC230 (a local log file)
        proc = await trio.lowlevel.open_process(
            [*wrapper, *server_command(kind, port)],
            cwd=str(HERE),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await wait_listening(proc, port, log_path, ready_timeout)
        yield proc
    finally:
        await stop_process(proc, group=True)


async def wait_listening(
    proc: trio.Process, port: int, log_path: Path, timeout: float = 30.0
) -> None:
    with trio.move_on_after(timeout):
        while proc.returncode is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return
    raise RuntimeError(
        f"server did not listen on {port}:\n{log_path.read_text()[-3000:]}"  # noqa: ASYNC240
    )


@asynccontextmanager
async def redis_process(log_dir: Path) -> AsyncIterator[str]:
    """A redis-server of our own on a free loopback port; yields its URL."""
    redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("redis-server is needed for the cross-process case")
    port = free_port()
    data_dir = log_dir / f"redis-{port}"
    data_dir.mkdir()
    with open(log_dir / f"redis-{port}.log", "wb") as log:  # noqa: ASYNC230
        proc = await trio.lowlevel.open_process(
            [
                redis,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(data_dir)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_redis(proc, port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        await stop_process(proc)


async def wait_redis(proc: trio.Process, port: int) -> None:
    with trio.move_on_after(10):
        while proc.returncode is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            async with stream:
                await stream.send_all(b"PING\r\n")
                if (await stream.receive_some(64)).startswith(b"+PONG"):
                    return
            await trio.sleep(0.05)  # still loading
    raise RuntimeError(f"redis-server did not answer on port {port}")


class LoadGen:
    """One loadgen.mjs process, spoken to in newline-delimited JSON."""

    def __init__(self, proc: trio.Process) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._buffer = bytearray()

    async def send(self, **command: Any) -> None:
        await self._stdin.send_all(json.dumps(command).encode() + b"\n")

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                line = await self._line()
                message = json.loads(line)
                if message.get("event") == event:
                    return message  # type: ignore[no-any-return]
                if message.get("event") == "error":
                    raise RuntimeError(f"loadgen: {message}")

    async def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some(1 << 20)
            if not chunk:
                raise RuntimeError("loadgen exited")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line


@asynccontextmanager
async def loadgen_process(
    log_dir: Path, index: int, script: str = "loadgen.mjs"
) -> AsyncIterator[LoadGen]:
    """A load generator (``script``, in Node) ready for commands; asked to
    close its sockets and exit at the end (then stopped)."""
    log_path = log_dir / f"{Path(script).stem}-{index}.log"
    with open(log_path, "ab") as log:  # noqa: ASYNC230
        proc = await trio.lowlevel.open_process(
            [node_binary(), str(HERE / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    gen = LoadGen(proc)
    try:
        await gen.expect("ready", 20)
        yield gen
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                await gen.send(cmd="close")
                await proc.wait()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stop_process(proc)


class Control:
    """The driver's own subscription to BenchControl on the server."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
        self.identifier = json.dumps({"channel": CONTROL_CHANNEL})
        self._done_send, self._done = trio.open_memory_channel[dict[str, Any]](64)

    async def subscribe(self) -> None:
        await self.ws.send_message(
            json.dumps({"command": "subscribe", "identifier": self.identifier})
        )
        with trio.fail_after(10):
            while True:
                frame = json.loads(await self.ws.get_message())
                if frame.get("type") == "confirm_subscription":
                    return

    async def read_forever(self) -> None:
        try:
            while True:
                frame = json.loads(await self.ws.get_message())
                message = frame.get("message")
                if isinstance(message, dict) and "done" in message:
                    self._done_send.send_nowait(message)
        except trio_websocket.ConnectionClosed:
            pass

    async def perform(self, action: str, **data: Any) -> None:
        await self.ws.send_message(
            json.dumps(
                {
                    "command": "message",
                    "identifier": self.identifier,
                    "data": json.dumps({"action": action, **data}),
                }
            )
        )

    async def done(self, action: str, timeout: float) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                message = await self._done.receive()
                if message["done"] == action:
                    return message


@asynccontextmanager
async def control_connection(port: int) -> AsyncIterator[Control]:
    body_failed = False
    try:
        async with (
            trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/cable",
                subprotocols=[PROTOCOL],
                connect_timeout=10,
                disconnect_timeout=2,
                message_queue_size=64,
            ) as ws,
            trio.open_nursery() as nursery,
        ):
            control = Control(ws)
            await control.subscribe()
            nursery.start_soon(control.read_forever)
            try:
                yield control
            except BaseException:
                body_failed = True
                raise
            finally:
                nursery.cancel_scope.cancel()
    except Exception as exc:
        if body_failed:
            raise
        # Only closing the control socket failed (a server busy with
        # thousands of closing sockets): nothing is lost.
        print(f"   (control socket close: {exc!r})", flush=True)


# -- the HTTP trigger ------------------------------------------------------------


def http_trigger_env(kind: str, port: int) -> tuple[int, dict[str, str]]:
    """Where ``kind`` answers ``POST /_broadcast`` (bench_common): its own
    port (Hypercorn, Node), else a side port passed as BENCH_HTTP_PORT."""
    if kind.endswith("hypercorn") or kind == "node-ws":
        return port, {}
    side = free_port()
    return side, {"BENCH_HTTP_PORT": str(side)}


class HttpTrigger:
    """Runs a server's series or burst through ``POST /_broadcast``: the
    request's task broadcasts, as a web controller or a job would. Has
    :class:`Control`'s ``perform``/``done``, so a phase is measured the
    same way; the response (the ``done`` record) arrives when it ended."""

    def __init__(self, port: int, nursery: trio.Nursery) -> None:
        self.port = port
        self._nursery = nursery
        self._done_send, self._done = trio.open_memory_channel[dict[str, Any]](64)

    async def perform(self, action: str, **data: Any) -> None:
        if action == "gc":
            raise ValueError("the HTTP trigger only broadcasts")
        body = json.dumps({"action": action, **data}).encode()
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        await stream.send_all(
            b"POST /_broadcast HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (len(body), body)
        )
        self._nursery.start_soon(self._response, stream)

    async def _response(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"POST /_broadcast: {head[:200]!r}")
        await self._done_send.send(json.loads(body))

    async def done(self, action: str, timeout: float) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                message = await self._done.receive()
                if message["done"] == action:
                    return message
