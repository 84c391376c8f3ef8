"""What every benchmark server shares: limits, payloads, control helpers.

The servers (bench_app.py: trio_cable; bare_app.py: the transports' own
floors) are driven by run.py through a control subscription whose actions
are ``series`` (broadcasts at intervals, for latency), ``burst`` (as many
as fast as possible, for throughput), ``memory`` (tracemalloc marks,
only when the server runs with ``BENCH_TRACEMALLOC=1``) and ``profile``
(a cProfile of the server around some phase).
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import resource
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import trio

BENCH_CHANNEL = "BenchChannel"
CONTROL_CHANNEL = "BenchControl"
STREAM = "bench"

TRACEMALLOC = os.environ.get("BENCH_TRACEMALLOC") == "1"
if TRACEMALLOC:
    tracemalloc.start(12)


class GCPauses:
    """Collections and their pauses per generation, since the last reset."""

    def __init__(self) -> None:
        self.reset()
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> dict[str, Any]:
        previous = getattr(self, "stats", {})
        self.stats: dict[str, Any] = {
            str(g): {"count": 0, "total_ms": 0.0, "max_ms": 0.0} for g in range(3)
        }
        return previous

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000.0
        entry = self.stats[str(info["generation"])]
        entry["count"] += 1
        entry["total_ms"] += ms
        entry["max_ms"] = max(entry["max_ms"], ms)


gc_pauses = GCPauses()

# run.py --gc: the same GC tuning for every server kind
if os.environ.get("BENCH_GC_THRESHOLD"):
    gc.set_threshold(*(int(x) for x in os.environ["BENCH_GC_THRESHOLD"].split(",")))


def gc_action(data: dict[str, Any]) -> dict[str, Any]:
    """Collect (``collect``) and/or freeze (``freeze``); return and reset
    the GC pause statistics."""
    if data.get("collect") or data.get("freeze"):
        gc.collect()
    if data.get("freeze"):
        gc.freeze()
    return {
        "done": "gc",
        "stats": gc_pauses.reset(),
        "threshold": gc.get_threshold(),
        "frozen": gc.get_freeze_count(),
    }


def raise_nofile_limit() -> int:
    """Raise the open-file soft limit to the hard one; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def bench_payload(phase: str, seq: int, pad: str) -> dict[str, Any]:
    """A broadcast: its phase, sequence and send time (ms since the epoch)."""
    return {"p": phase, "s": seq, "t": time.time() * 1000.0, "x": pad}


def padding(size: int) -> str:
    return "x" * max(0, min(int(size), 65536))


# -- memory: where per-connection bytes go ------------------------------------

_mark: tracemalloc.Snapshot | None = None


def _category(filename: str) -> str:
    """Name the part of the stack that allocated (innermost frame's file)."""
    f = filename.replace("\\", "/")
    for package in ("trio_cable", "trio_websocket", "wsproto", "h11", "hypercorn"):
        if f"/{package}/" in f:
            return f"{package}/{f.rsplit('/', 1)[-1]}"
    if "/trio/" in f:
        return "trio/" + f.split("/trio/", 1)[1]
    if "/benchmarks/" in f:
        return "bench app"
    return f.rsplit("/", 1)[-1]


def _owner(traceback: tracemalloc.Traceback) -> str:
    """The innermost library (not trio itself) on the allocating stack:
    whose per-connection objects these are (trio tasks included)."""
    skipped = (traceback.total_nframe or len(traceback)) - len(traceback)
    for index in range(len(traceback) - 1, -1, -1):  # innermost first
        category = _category(traceback[index].filename)
        if category == "bench app":
            # The thread's root (<module>, main() calling trio.run) owns
            # only the tasks trio starts by itself, e.g. accept loops.
            if skipped + index <= 1:
                return "trio itself (listener tasks)"
            return category
        if category.split("/", 1)[0] in _OWNERS:
            return category.split("/", 1)[0]
    return "other"


_OWNERS = {"trio_cable", "trio_websocket", "wsproto", "h11", "hypercorn"}


def _by_category(snapshot: tracemalloc.Snapshot) -> dict[str, dict[str, int]]:
    groups: dict[str, dict[str, int]] = {
        "file": defaultdict(int),
        "line": defaultdict(int),
        "owner": defaultdict(int),
        "owner_file": defaultdict(int),
    }
    for stat in snapshot.statistics("traceback"):
        frame = stat.traceback[-1]  # tracebacks run oldest -> innermost
        category = _category(frame.filename)
        groups["file"][category] += stat.size
        groups["line"][f"{category}:{frame.lineno}"] += stat.size
        owner = _owner(stat.traceback)
        groups["owner"][owner] += stat.size
        groups["owner_file"][f"{owner} -> {category}"] += stat.size
    return groups


def memory_action(data: dict[str, Any]) -> dict[str, Any]:
    """``mark`` before the clients connect, ``report`` once they have."""
    global _mark
    if not TRACEMALLOC:
        return {"error": "run the server with BENCH_TRACEMALLOC=1"}
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if data.get("op") == "mark":
        _mark = snapshot
        return {"marked": True}
    if _mark is None:
        return {"error": "no mark"}
    n = max(1, int(data.get("connections", 1)))
    before, after = _by_category(_mark), _by_category(snapshot)
    per_conn: dict[str, list[tuple[str, float]]] = {}
    for key in ("file", "line", "owner", "owner_file"):
        b, a = before[key], after[key]
        diff = {k: (a.get(k, 0) - b.get(k, 0)) / n for k in set(a) | set(b)}
        per_conn[key] = sorted(diff.items(), key=lambda kv: -kv[1])[:30]
    report = {
        "connections": n,
        "bytes_per_connection": sum(v for _, v in per_conn["owner"]),
        "by_file": dict(per_conn["file"]),
        "by_owner": dict(per_conn["owner"]),
        "by_owner_file": dict(per_conn["owner_file"]),
        "top_lines": dict(per_conn["line"][:25]),
    }
    path = data.get("path")
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    return {"reported": True, "bytes_per_connection": report["bytes_per_connection"]}


# -- CPU: where the server's time goes ------------------------------------------

_profiler: cProfile.Profile | None = None


def profile_action(data: dict[str, Any]) -> dict[str, Any]:
    """``start`` a cProfile of the server's thread; ``stop`` it and write
    its stats to ``path`` (read them with ``python -m pstats``)."""
    global _profiler
    if data.get("op") == "start":
        _profiler = cProfile.Profile(time.process_time)
        _profiler.enable()
        return {"started": True}
    if _profiler is None:
        return {"error": "not started"}
    _profiler.disable()
    _profiler.dump_stats(str(data["path"]))
    _profiler = None
    return {"written": True}


class _StepCounter(trio.abc.Instrument):
    """Counts the scheduler's work: task steps, tasks spawned, epoll waits
    (those that found an event ready or not alike), and the calls of
    ``wait_readable`` and ``wait_writable`` (each registers the socket with
    epoll and, once it wakes, takes it off again)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(
            ("steps", "spawned", "io_waits", "wait_readable", "wait_writable"), 0
        )
        self._originals: dict[str, Any] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.counts["steps"] += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.counts["spawned"] += 1

    def before_io_wait(self, timeout: float) -> None:
        self.counts["io_waits"] += 1

    def wrap_waits(self) -> None:
        for name in ("wait_readable", "wait_writable"):
            original = self._originals[name] = getattr(trio.lowlevel, name)

            async def counted(sock: Any, _name: str = name, _f: Any = original) -> None:
                self.counts[_name] += 1
                await _f(sock)

            setattr(trio.lowlevel, name, counted)

    def unwrap_waits(self) -> None:
        for name, original in self._originals.items():
            setattr(trio.lowlevel, name, original)


_steps: _StepCounter | None = None


def steps_action(data: dict[str, Any]) -> dict[str, Any]:
    """``start`` counting the scheduler's work (:class:`_StepCounter`);
    ``stop`` and return the counts."""
    global _steps
    if data.get("op") == "start":
        _steps = _StepCounter()
        _steps.wrap_waits()
        trio.lowlevel.add_instrument(_steps)
        return {"started": True}
    if _steps is None:
        return {"error": "not started"}
    trio.lowlevel.remove_instrument(_steps)
    _steps.unwrap_waits()
    counts, _steps = _steps.counts, None
    return {"counts": counts}


# -- the HTTP trigger: a broadcast arriving as a request --------------------------
#
# ``POST /_broadcast`` with a JSON body ``{"action": "burst"|"series", ...}``
# runs that action in the request's own task, as a web controller or a job
# would broadcast, and answers its ``done`` record as JSON once finished.
# Hypercorn servers answer it on their own port (ASGI); the others on a
# side port of the same process (``BENCH_HTTP_PORT``, served by
# serve_http_trigger), since their WebSocket port speaks no POST.

HTTP_PATH = "/_broadcast"
HTTP_PORT = int(os.environ.get("BENCH_HTTP_PORT") or 0)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _http_response(status: str, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n"
        % (status.encode(), len(body))
    ) + body


async def _http_connection(stream: trio.SocketStream, handle: Handler) -> None:
    async with stream:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, path = lines[0].split(b" ")[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            body += chunk
        if method != b"POST" or path != HTTP_PATH.encode():
            await stream.send_all(_http_response("404 Not Found", b"{}"))
            return
        reply = await handle(json.loads(body))
        await stream.send_all(_http_response("200 OK", json.dumps(reply).encode()))


async def serve_http_trigger(
    port: int,
    handle: Handler,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The side port's ``POST /_broadcast`` (a plain trio HTTP/1.1 server)."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started()
    await trio.serve_listeners(partial(_http_connection, handle=handle), listeners)


async def asgi_http_trigger(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    handle: Handler,
) -> None:
    """``POST /_broadcast`` as an ASGI HTTP app (Hypercorn's own port)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] != "POST" or scope["path"] != HTTP_PATH:
        status, reply = 404, b"{}"
    else:
        status, reply = 200, json.dumps(await handle(json.loads(body))).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(reply)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": reply})
