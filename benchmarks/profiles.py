"""Summaries of run.py --profile: py-spy CPU samples and tracemalloc
memory breakdowns, as tables for docs/benchmarks.md."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from harness import LABELS


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# -- the CPU profile (py-spy raw/collapsed stacks) ------------------------------------

# Self time of a sample goes to its leaf. py-spy runs with --native, so a
# sample inside the cyclic garbage collector or a socket syscall ends in
# that C function; any other C leaf (the interpreter, str concatenation,
# json's C encoder) counts for the innermost Python function above it.
NATIVE: list[tuple[str, re.Pattern[str]]] = [
    (
        "cyclic garbage collector",
        re.compile(r"gc_collect|collect_generations|\(gcmodule\.c"),
    ),
    (
        "send() syscalls (socket writes)",
        re.compile(r"^(__libc_)?(send|sendto|sendmsg|write) \("),
    ),
    (
        "recv() syscalls (socket reads)",
        re.compile(r"^(__libc_)?(recv|recvfrom|recvmsg|read) \("),
    ),
    ("epoll_wait", re.compile(r"^epoll_wait \(")),
]
# First match on the innermost Python frame wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "JSON encoding (once per broadcast)",
        ("json/encoder.py", "json/__init__.py", "encode_payload ("),
    ),
    (
        "hub fan-out + frame building (trio_cable)",
        (
            "trio_cable/_hub.py",
            "trio_cable/_cable.py",
            "deliver (trio_cable",
            "enqueue (trio_cable",
            "trio_cable/protocol/codec.py",
            "trio_cable/_queue.py",
        ),
    ),
    ("connection writer/reader (trio_cable)", ("trio_cable/",)),
    ("fan-out + writer (bare loop)", ("bare_app.py",)),
    ("benchmark control (payload dicts)", ("bench_app.py", "bench_common.py")),
    ("memory-channel handoff", ("trio/_channel.py",)),
    (
        "trio socket wrappers (Python side of send/recv)",
        ("trio/_socket.py", "trio/_highlevel_socket.py", "socket.py"),
    ),
    ("epoll bookkeeping", ("trio/_core/_io_epoll.py",)),
    ("trio scheduler, task switches, locks", ("trio/", "outcome/")),
    ("trio-websocket", ("trio_websocket/",)),
    ("wsproto framing", ("wsproto/",)),
    ("hypercorn (ASGI + protocol)", ("hypercorn/",)),
    ("h11 (handshakes)", ("h11/",)),
]

_PYTHON_FRAME = re.compile(r"\((?:[^()]*\.py|<[^>]*>):\d+\)$")


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        if _PYTHON_FRAME.search(frame):
            for name, needles in CATEGORIES:
                if any(n in frame for n in needles):
                    return name
            return "other: " + frame.split(" (", 1)[0]
        for name, rx in NATIVE:
            if rx.search(frame):
                return name
    return "other (native)"


# Inclusive: the share of samples with such a frame anywhere on the stack.
INCLUSIVE: list[tuple[str, str]] = [
    ("Hub.publish (fan-out loop)", r"Hub\.publish \("),
    ("BareServer.fan_out", r"BareServer\.fan_out \("),
    ("writer tasks (Connection._writer / bare _writer)", r"\._writer \("),
    ("trio-websocket send_message", r"WebSocketConnection\.send_message \("),
    ("hypercorn websocket.send (app_send)", r"\.app_send \(.*hypercorn"),
    ("wsproto (any)", r"wsproto/"),
    ("SocketStream.send_all", r"SocketStream\.send_all \("),
    ("reading sockets (receive_some)", r"\.receive_some \("),
]


def summarise_profile(raw: str, burst: dict[str, Any]) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    patterns = [(label, re.compile(rx)) for label, rx in INCLUSIVE]
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        python = [f for f in frames if _PYTHON_FRAME.search(f)]
        leaf = re.sub(r":\d+\)$", ")", python[-1] if python else frames[-1])
        self_time[_category(frames)] += count
        leaves[leaf] += count
        for label, rx in patterns:
            if any(rx.search(f) for f in frames):
                inclusive[label] += count
    deliveries = burst.get("received") or 1
    cpu_s = burst.get("server_cpu_s") or 0.0

    def row(count: int) -> dict[str, float]:
        share = count / total if total else 0.0
        return {
            "pct": 100.0 * share,
            "us_per_delivery": 1e6 * share * cpu_s / deliveries,
        }

    return {
        "samples": total,
        "server_cpu_s": cpu_s,
        "deliveries": deliveries,
        "us_per_delivery": 1e6 * cpu_s / deliveries,
        "self": {k: row(v) for k, v in self_time.most_common()},
        "inclusive": {k: row(inclusive[k]) for k, _ in INCLUSIVE if inclusive[k]},
        "top_functions": {k: row(v) for k, v in leaves.most_common(20)},
    }


def profile_markdown(doc: dict[str, Any]) -> str:
    out: list[str] = []
    for r in doc["results"]:
        label = f"{LABELS[r['server']]}, {r['connections']:,} connections"
        if r["mode"] == "profile":
            p, b = r["profile"], r["burst"]
            out.append(
                f"#### CPU: {label}\n\nburst of {b['received']:,} deliveries at "
                f"{_f(b.get('deliveries_per_s'))}/s (sampled by py-spy, so a little "
                f"slower than unsampled); server CPU {p['server_cpu_s']:.2f} s = "
                f"**{p['us_per_delivery']:.1f} µs per delivery**; "
                f"{p['samples']:,} samples.\n"
            )
            out.append("| self time in | share | µs/delivery |\n|---|--:|--:|")
            for k, v in p["self"].items():
                if v["pct"] >= 1.0:
                    out.append(
                        f"| {k} | {v['pct']:.1f}% | {v['us_per_delivery']:.2f} |"
                    )
            out.append(
                "\n| inclusive (anywhere on the stack) | share | µs/delivery |"
                "\n|---|--:|--:|"
            )
            for k, v in p["inclusive"].items():
                out.append(f"| {k} | {v['pct']:.1f}% | {v['us_per_delivery']:.2f} |")
            out.append("")
        elif r["mode"] == "memory":
            m = r["memory"]
            out.append(
                f"#### Memory: {label}\n\ntraced by tracemalloc: "
                f"**{m['bytes_per_connection'] / 1024:.1f} KiB per connection** "
                f"(RSS delta under tracemalloc: {r['kib_per_connection']:.1f} KiB)\n"
            )
            out.append(
                "| allocated by (innermost library frame) | bytes/conn |\n|---|--:|"
            )
            for k, v in m["by_owner"].items():
                if abs(v) >= 64:
                    out.append(f"| {k} | {v:,.0f} |")
            out.append(
                "\n| allocated by -> in (the 15 largest) | bytes/conn |\n|---|--:|"
            )
            for k, v in list(m["by_owner_file"].items())[:15]:
                out.append(f"| {k} | {v:,.0f} |")
            out.append("")
    return "\n".join(out) + "\n"
