"""Tables, targets, profile summaries and the generated parts of
docs/benchmarks.md, from run.py's result documents."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

LABELS = {
    "cable-trio-websocket": "trio_cable / trio-websocket",
    "cable-hypercorn": "trio_cable / Hypercorn",
    "bare-trio-websocket": "bare trio-websocket loop",
    "bare-hypercorn": "bare Hypercorn loop",
}

# -- the machine ------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    versions = {}
    for dist in ("trio", "trio-websocket", "wsproto", "hypercorn", "h11"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    node = shutil.which("node")
    node_version = (
        subprocess.run(
            [node, "--version"], capture_output=True, text=True
        ).stdout.strip()
        if node
        else None
    )
    ws_pkg = ROOT / "js" / "node_modules" / "ws" / "package.json"
    ws_version = json.loads(ws_pkg.read_text())["version"] if ws_pkg.exists() else None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_version,
        "ws": ws_version,
        **versions,
    }


def machine_markdown(m: dict[str, Any]) -> str:
    return (
        f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, "
        f"Linux {m['kernel']}\n"
        f"- Python {m['python']}, trio {m['trio']}, trio-websocket "
        f"{m['trio-websocket']}, wsproto {m['wsproto']}, Hypercorn {m['hypercorn']}, "
        f"h11 {m['h11']}\n"
        f"- Node {m['node']}, ws {m['ws']}\n"
    )


# -- results --------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    (
        "server",
        lambda r: (
            LABELS.get(r["server"], r["server"])
            + (" (busy machine)" if r.get("others_busy") else "")
        ),
    ),
    ("conns", lambda r: f"{r['connected']:,}/{r['connections']:,}"),
    ("connect/s", lambda r: _f(r["connect_per_s"])),
    ("KiB/conn", lambda r: _f(r["kib_per_connection"], 1)),
    ("after traffic", lambda r: _f(r.get("kib_per_connection_after_series"), 1)),
    ("p50 ms", lambda r: _f(r["series"]["p50"], 1)),
    ("p99 ms", lambda r: _f(r["series"]["p99"], 1)),
    ("max ms", lambda r: _f(r["series"]["max"], 1)),
    ("delivered (20)", lambda r: f"{r['series']['delivered_pct']:.2f}%"),
    ("burst deliveries/s", lambda r: _f(r["burst"].get("deliveries_per_s"))),
    ("delivered (burst)", lambda r: f"{r['burst']['delivered_pct']:.2f}%"),
    ("server CPU", lambda r: f"{r['burst']['server_cpu_pct']:.0f}%"),
    ("of which GC", lambda r: f"{gc_share(r['burst']):.0f}%"),
    (
        "others' CPU",
        lambda r: f"{max(0.0, r['burst'].get('others_cpu_pct', 0.0)):.0f}%",
    ),
    (
        "loadgen CPU",
        lambda r: " + ".join(f"{x:.0f}%" for x in r["burst"]["loadgen_cpu_pct"]),
    ),
]


def gc_share(phase: dict[str, Any]) -> float:
    """Cyclic-GC pauses as a share of the server's CPU time in a phase."""
    gc_ms = sum(g["total_ms"] for g in phase.get("gc", {}).values())
    cpu_ms = 1000.0 * (phase.get("server_cpu_s") or 0.0)
    return 100.0 * gc_ms / cpu_ms if cpu_ms else 0.0


def one_line(r: dict[str, Any]) -> str:
    if r["mode"] == "memory":
        m = r["memory"]
        return (
            f"   {r['connected']} connected, RSS {r['kib_per_connection']:.1f} "
            f"KiB/conn (under tracemalloc), traced "
            f"{m['bytes_per_connection'] / 1024:.1f} KiB/conn"
        )
    b = r["burst"]
    line = (
        f"   {r['connected']}/{r['connections']} connected at "
        f"{_f(r['connect_per_s'])}/s, {_f(r['kib_per_connection'], 1)} KiB/conn; burst "
        f"{b['received']}/{b['expected']} at {_f(b.get('deliveries_per_s'))}/s, "
        f"server CPU {b['server_cpu_pct']:.0f}% (GC {gc_share(b):.0f}% of it)"
    )
    if "series" in r:
        s = r["series"]
        line += (
            f"; latency p50 {_f(s['p50'], 1)} p99 {_f(s['p99'], 1)} max "
            f"{_f(s['max'], 1)} ms, {s['delivered_pct']:.2f}% delivered"
        )
    return line


def _measured(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["mode"] == "measure"]


def text_table(doc: dict[str, Any]) -> str:
    if doc["config"].get("profile"):
        return profile_markdown(doc)
    rows = [[name for name, _ in COLUMNS]]
    rows += [[cell(r) for _, cell in COLUMNS] for r in _measured(doc)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(lines) + "\n\n" + targets_markdown(doc)


def results_markdown(doc: dict[str, Any]) -> str:
    head = [name for name, _ in COLUMNS]
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|",
    ]
    for r in _measured(doc):
        out.append("| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def _find(doc: dict[str, Any], server: str, n: int) -> dict[str, Any] | None:
    for r in _measured(doc):
        if r["server"] == server and r["connections"] == n:
            return r
    return None


def targets(doc: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every connection count measured."""
    rows: list[tuple[str, str, bool | None]] = []
    counts = sorted({r["connections"] for r in _measured(doc)})
    for n in counts:
        tws = _find(doc, "cable-trio-websocket", n)
        if tws is not None:
            rate = tws["burst"].get("deliveries_per_s") or 0.0
            rows.append(
                (
                    f"{n:,} conns, trio-websocket: >= 13,000 deliveries/s in a burst",
                    f"{rate:,.0f}/s",
                    rate >= 13_000,
                )
            )
            kib = tws["kib_per_connection"]
            rows.append(
                (
                    f"{n:,} conns, trio-websocket: <= 28 KiB per connection",
                    f"{kib:.1f} KiB",
                    kib <= 28,
                )
            )
        hc, bare = _find(doc, "cable-hypercorn", n), _find(doc, "bare-hypercorn", n)
        if hc is not None and bare is not None:
            rate = hc["burst"].get("deliveries_per_s") or 0.0
            floor = bare["burst"].get("deliveries_per_s") or 0.0
            rows.append(
                (
                    f"{n:,} conns, Hypercorn: deliveries/s within 15% of the bare loop",
                    f"{rate:,.0f} vs {floor:,.0f}/s ({_pct(rate, floor)})",
                    rate >= 0.85 * floor,
                )
            )
            for key, what in (
                ("kib_per_connection", "KiB/conn"),
                ("kib_per_connection_after_series", "KiB/conn after traffic"),
            ):
                kib, floor_kib = hc[key], bare[key]
                rows.append(
                    (
                        f"{n:,} conns, Hypercorn: {what} within 15% of the bare loop",
                        f"{kib:.1f} vs {floor_kib:.1f} KiB ({_pct(kib, floor_kib)})",
                        kib <= 1.15 * floor_kib,
                    )
                )
    for r in _measured(doc):
        if r["server"].startswith("cable-"):
            pcts = (r["series"]["delivered_pct"], r["burst"]["delivered_pct"])
            complete = r["connected"] == r["connections"] and min(pcts) >= 100.0
            rows.append(
                (
                    f"{r['connections']:,} conns, {LABELS[r['server']]}: "
                    "100% delivered",
                    f"{pcts[0]:.2f}% / {pcts[1]:.2f}% (series / burst), "
                    f"{r['connected']:,} connected",
                    complete,
                )
            )
    return rows


def _pct(value: float, base: float) -> str:
    return f"{100.0 * (value - base) / base:+.0f}%" if base else "n/a"


def targets_markdown(doc: dict[str, Any]) -> str:
    out = ["| target | measured | |", "|---|---|---|"]
    for target, measured, met in targets(doc):
        out.append(f"| {target} | {measured} | {'met' if met else '**not met**'} |")
    return "\n".join(out) + "\n"


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
            "trio_cable/_protocol.py",
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


# -- docs/benchmarks.md --------------------------------------------------------------


def _replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def gc_setting(cfg: dict[str, Any]) -> str:
    parts = []
    if cfg.get("gc_threshold"):
        parts.append(f"gc.set_threshold({cfg['gc_threshold']})")
    if cfg.get("gc_freeze"):
        parts.append("gc.freeze() once connected")
    return " + ".join(parts) or "Python's default GC settings"


def update_docs(path: Path, doc: dict[str, Any]) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    machine = machine_markdown(doc["machine"])
    if doc["config"].get("profile"):
        counts = "-".join(str(n) for n in doc["config"]["connections"])
        body = machine + "\n" + profile_markdown(doc)
        text = _replace_block(text, f"profile-{counts}", body)
    else:
        cfg = doc["config"]
        body = (
            machine
            + f"\n{cfg['broadcasts']} broadcasts at {cfg['interval_s'] * 1000:.0f} ms "
            f"intervals for latency; bursts of about {cfg['burst_deliveries']:,} "
            "deliveries; "
            f"whole run {doc['wall_s']:.0f} s.\n\n"
            + results_markdown(doc)
            + "\n### Targets\n\n"
            + targets_markdown(doc)
        )
        tuned = cfg.get("gc_threshold") or cfg.get("gc_freeze")
        text = _replace_block(text, "results-gc" if tuned else "results", body)
    path.write_text(text)
