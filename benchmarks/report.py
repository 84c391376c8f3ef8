"""Tables, targets and the generated parts of docs/benchmarks.md, from
run.py's result documents (profiles: profiles.py)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import LABELS
from profiles import profile_markdown

HERE = Path(__file__).resolve().parent

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
    ws_pkg = HERE / "node-ref" / "node_modules" / "ws" / "package.json"
    ws_version = json.loads(ws_pkg.read_text())["version"] if ws_pkg.exists() else None
    redis = shutil.which("redis-server")
    redis_version = (
        subprocess.run([redis, "--version"], capture_output=True, text=True)
        .stdout.split()[2]
        .removeprefix("v=")
        if redis
        else None
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_version,
        "ws": ws_version,
        "redis": redis_version,
        **versions,
    }


def machine_markdown(m: dict[str, Any]) -> str:
    return (
        f"- {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB memory, "
        f"Linux {m['kernel']}\n"
        f"- Python {m['python']}, trio {m['trio']}, trio-websocket "
        f"{m['trio-websocket']}, wsproto {m['wsproto']}, Hypercorn {m['hypercorn']}, "
        f"h11 {m['h11']}\n"
        f"- Node {m['node']}, ws {m['ws']}; redis-server {m.get('redis')}\n"
    )


# -- results --------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def gc_share(phase: dict[str, Any]) -> float:
    """Garbage-collector pauses as a share of the server's CPU time in a phase."""
    gc_ms = sum(g["total_ms"] for g in phase.get("gc", {}).values())
    cpu_ms = 1000.0 * (phase.get("server_cpu_s") or 0.0)
    return 100.0 * gc_ms / cpu_ms if cpu_ms else 0.0


def _latency(phase: dict[str, Any]) -> str:
    cell = f"{_f(phase['p50'], 1)} / {_f(phase['p99'], 1)}"
    if phase["delivered_pct"] < 100.0:
        cell += f" ({phase['delivered_pct']:.2f}% delivered)"
    return cell


def _burst(phase: dict[str, Any]) -> str:
    cell = _f(phase.get("deliveries_per_s"))
    if phase["delivered_pct"] < 100.0:
        cell += f" ({phase['delivered_pct']:.2f}% delivered)"
    return cell


def _connect(r: dict[str, Any]) -> str:
    cell = _f(r["connect_per_s"])
    if r["connected"] < r["connections"]:
        cell += f" ({r['connected']:,} of {r['connections']:,} connected)"
    return cell + _connect_cpu(r)


def _connect_cpu(r: dict[str, Any]) -> str:
    """The server's CPU per connect and the generators' share of a core
    over the connects (older results have neither)."""
    if r.get("connect_server_cpu_us") is None:
        return ""
    cell = f"; server {r['connect_server_cpu_us']:.0f} µs each"
    if "connect_loadgen_cpu_pct" in r:
        cell += ", generators " + _loadgen(
            {"loadgen_cpu_pct": r["connect_loadgen_cpu_pct"]}
        )
    return cell


def _echo(r: dict[str, Any]) -> str:
    e = r.get("echo")
    if not e:
        return "-"
    cell = f"{_f(e['p50'], 2)} / {_f(e['p99'], 2)}"
    if e["received"] < e["expected"]:
        cell += f" ({e['received']:,} of {e['expected']:,})"
    return cell


def _cpu(phase: dict[str, Any]) -> str:
    return f"{phase['server_cpu_pct']:.0f}% (GC {gc_share(phase):.0f}%)"


#: A generator process this busy (of one core) is the bottleneck, not the server.
GENERATOR_BOUND_PCT = 90.0


def _loadgen(phase: dict[str, Any]) -> str:
    cell = " + ".join(f"{x:.0f}%" for x in phase["loadgen_cpu_pct"])
    if max(phase["loadgen_cpu_pct"], default=0.0) >= GENERATOR_BOUND_PCT:
        cell += " **generator-bound**"
    return cell


def _phase(name: str, cell: Callable[[dict[str, Any]], str]) -> Callable[..., str]:
    """A cell of an optional phase (``-`` where the run did not measure it)."""
    return lambda r: cell(r[name]) if name in r else "-"


# (title, what to read against, cell)
METRICS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    (
        "Connect + subscribe rate (connections/s)",
        "connect, `welcome`, subscribe, `confirm_subscription`; 100 in flight "
        "per generator (two generators; `--concurrency`); the server's CPU per "
        "connect and the generators' CPU over the connects; target >= 2,000/s",
        _connect,
    ),
    (
        "Server memory per idle subscribed connection (KiB: RSS delta / connections)",
        "target <= 16 KiB",
        lambda r: _f(r["kib_per_connection"], 1),
    ),
    (
        "Fan-out latency, 20 broadcasts 200 ms apart: p50 / p99 ms",
        "targets: 5,000 subscribers 100% delivered, p99 < 250 ms; "
        "10,000 subscribers p99 < 500 ms",
        lambda r: _latency(r["series"]),
    ),
    (
        "Burst deliveries/s",
        "target >= 50,000/s or >= 70% of the Node ws reference",
        lambda r: _burst(r["burst"]),
    ),
    (
        "Server CPU during the burst (share of it in GC pauses)",
        "100% is one core, all a one-thread server can use",
        lambda r: _cpu(r["burst"]),
    ),
    (
        "Load generator CPU during the burst (two processes)",
        "at 90% or more of a core the generators are the bottleneck "
        "(marked **generator-bound**), not the server",
        lambda r: _loadgen(r["burst"]),
    ),
    (
        "HTTP-triggered fan-out latency, 20 broadcasts 200 ms apart: p50 / p99 ms",
        "broadcast by a `POST /_broadcast` request's task on the server "
        "(Hypercorn's own port; a side port of the same process for the others)",
        _phase("http_series", _latency),
    ),
    (
        "HTTP-triggered burst deliveries/s",
        "the same burst made by a `POST /_broadcast` request's task; the bare "
        "loops `await` each socket's send in that task, one after another",
        _phase("http_burst", _burst),
    ),
    (
        "Server CPU during the HTTP-triggered burst (share of it in GC pauses)",
        "100% is one core",
        _phase("http_burst", _cpu),
    ),
    (
        "Load generator CPU during the HTTP-triggered burst (two processes)",
        "**generator-bound** at 90% or more of a core",
        _phase("http_burst", _loadgen),
    ),
    (
        "Echo round trip, p50 / p99 ms",
        "every echoing socket waits for each reply before the next",
        _echo,
    ),
]


def _measured(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r for r in doc["results"] if r["mode"] == "measure" and not r.get("skipped")
    ]


def _counts(doc: dict[str, Any]) -> list[int]:
    return sorted({r["connections"] for r in _measured(doc)})


def _kinds(doc: dict[str, Any]) -> list[str]:
    present = {r["server"] for r in _measured(doc)}
    return [k for k in LABELS if k in present]


def _find(doc: dict[str, Any], server: str, n: int) -> dict[str, Any] | None:
    for r in _measured(doc):
        if r["server"] == server and r["connections"] == n:
            return r
    return None


def _label(r: dict[str, Any] | None, cell: Callable[[dict[str, Any]], str]) -> str:
    if r is None:
        return "-"
    return cell(r) + (" \\*" if r.get("others_busy") else "")


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def metric_tables(doc: dict[str, Any]) -> str:
    """One table per metric: a row per server, a column per connection count."""
    counts = _counts(doc)
    head = ["server", *(f"{n:,} subscribers" for n in counts)]
    out: list[str] = []
    for title, note, cell in METRICS:
        rows = [
            [LABELS[kind], *(_label(_find(doc, kind, n), cell) for n in counts)]
            for kind in _kinds(doc)
        ]
        out.append(f"### {title}\n\n{note}.\n\n{_table(head, rows)}")
    if any(r.get("others_busy") for r in _measured(doc)):
        out.append(
            "\\* another workload on the machine took more than 25% of a CPU "
            "during that case's burst.\n"
        )
    skipped = [r for r in doc["results"] if r.get("skipped")]
    if skipped:
        names = ", ".join(
            f"{LABELS.get(r['server'], r['server'])} at {r['connections']:,}"
            for r in skipped
        )
        out.append(f"Skipped (over the run's time budget): {names}.\n")
    return "\n".join(out)


def redis_markdown(doc: dict[str, Any]) -> str:
    rows = []
    for r in doc["results"]:
        if r["mode"] != "redis" or r.get("skipped"):
            continue
        s, b = r["series"], r["burst"]
        rows.append(
            [
                f"{r['connected']:,} of {r['connections']:,}",
                _latency(s),
                _burst(b),
                _cpu(b),
                f"{b.get('publisher_cpu_pct', 0.0):.0f}%",
                _loadgen(b),
            ]
        )
    if not rows:
        return ""
    head = [
        "subscribers (on server B)",
        "fan-out latency p50 / p99 ms",
        "burst deliveries/s",
        "server B CPU (GC)",
        "server A CPU",
        "loadgen CPU",
    ]
    return (
        "### Across processes through Redis\n\n"
        "Broadcasts made in server A, delivered by server B; both cable-direct, "
        "bridged by a redis-server of their own.\n\n" + _table(head, rows)
    )


# -- targets (issue 7) -----------------------------------------------------------------


def _burst_target(doc: dict[str, Any], r: dict[str, Any]) -> tuple[str, bool]:
    rate = r["burst"].get("deliveries_per_s") or 0.0
    node = _find(doc, "node-ws", r["connections"])
    ref = node["burst"].get("deliveries_per_s") if node else None
    share = rate / ref if ref else None
    text = f"{rate:,.0f}/s" + (f" ({share:.0%} of Node)" if share is not None else "")
    return text, rate >= 50_000 or (share is not None and share >= 0.7)


def _latency_target(
    r: dict[str, Any], n: int, limit: float, complete: bool
) -> tuple[str, bool] | None:
    if r["connections"] != n:
        return None
    s = r["series"]
    text = f"p99 {_f(s['p99'], 1)} ms, {s['delivered_pct']:.2f}% delivered"
    met = s["p99"] is not None and s["p99"] < limit
    if complete:
        met = met and s["delivered_pct"] >= 100.0 and r["connected"] == n
    return text, met


def _complete(r: dict[str, Any]) -> tuple[str, bool]:
    pcts = (r["series"]["delivered_pct"], r["burst"]["delivered_pct"])
    text = f"{r['connected']:,} connected, {pcts[0]:.2f}% / {pcts[1]:.2f}%"
    return text, r["connected"] == r["connections"] and min(pcts) >= 100.0


def _memory_target(r: dict[str, Any]) -> tuple[str, bool]:
    kib = r["kib_per_connection"]
    return f"{_f(kib, 1)} KiB", kib is not None and kib <= 16.0


def _connect_target(r: dict[str, Any]) -> tuple[str, bool]:
    rate = r["connect_per_s"]
    return f"{_f(rate)}/s", rate is not None and rate >= 2000.0


# (target, its cell for one server's result; None where it does not apply)
TargetCell = Callable[[dict[str, Any], dict[str, Any]], tuple[str, bool] | None]
TARGETS: list[tuple[str, TargetCell]] = [
    ("burst >= 50,000 deliveries/s or >= 70% of Node ws", _burst_target),
    (
        "20 x 200 ms: 100% delivered, p99 < 250 ms",
        lambda doc, r: _latency_target(r, 5000, 250.0, True),
    ),
    (
        "20 x 200 ms: p99 < 500 ms",
        lambda doc, r: _latency_target(r, 10_000, 500.0, False),
    ),
    ("<= 16 KiB per idle subscribed connection", lambda doc, r: _memory_target(r)),
    (">= 2,000 connects + subscribes per second", lambda doc, r: _connect_target(r)),
    (
        "every client connected, 100% delivered (series / burst)",
        lambda doc, r: _complete(r),
    ),
]


def targets(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, tuple[str, bool]]]]:
    """(target, count, {server: (measured, met)}) for the trio_cable servers."""
    kinds = [k for k in _kinds(doc) if k.startswith("cable-")]
    rows = []
    for name, cell in TARGETS:
        for n in _counts(doc):
            cells = {}
            for kind in kinds:
                r = _find(doc, kind, n)
                value = cell(doc, r) if r is not None else None
                if value is not None:
                    cells[kind] = value
            if cells:
                rows.append((name, f"{n:,}", cells))
    return rows


def targets_markdown(doc: dict[str, Any]) -> str:
    kinds = [k for k in _kinds(doc) if k.startswith("cable-")]
    head = ["target", "subscribers", *(LABELS[k] for k in kinds)]
    rows = []
    for name, count, cells in targets(doc):
        row = [name, count]
        for kind in kinds:
            if kind in cells:
                text, met = cells[kind]
                row.append(f"{text}: {'met' if met else '**not met**'}")
            else:
                row.append("-")
        rows.append(row)
    return _table(head, rows)


def one_line(r: dict[str, Any]) -> str:
    if r.get("skipped"):
        return "   skipped"
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
        f"{_f(r['connect_per_s'])}/s{_connect_cpu(r)}"
    )
    if r.get("kib_per_connection") is not None:
        line += f", {_f(r['kib_per_connection'], 1)} KiB/conn"
    line += (
        f"; burst {b['received']}/{b['expected']} at "
        f"{_f(b.get('deliveries_per_s'))}/s, server CPU {b['server_cpu_pct']:.0f}% "
        f"(GC {gc_share(b):.0f}% of it), loadgens {_loadgen(b)}"
    )
    if "series" in r:
        s = r["series"]
        line += (
            f"; latency p50 {_f(s['p50'], 1)} p99 {_f(s['p99'], 1)} max "
            f"{_f(s['max'], 1)} ms, {s['delivered_pct']:.2f}% delivered"
        )
    if r.get("echo"):
        e = r["echo"]
        line += (
            f"; echo {e['received']}/{e['expected']} p50 {_f(e['p50'], 2)} "
            f"p99 {_f(e['p99'], 2)} ms"
        )
        if e.get("server_cpu_us") is not None:
            line += f", server {e['server_cpu_us']:.0f} µs each"
    return line


def results_markdown(doc: dict[str, Any]) -> str:
    parts = [metric_tables(doc)]
    redis = redis_markdown(doc)
    if redis:
        parts.append(redis)
    parts.append("### Targets\n\n" + targets_markdown(doc))
    return "\n".join(parts)


def text_table(doc: dict[str, Any]) -> str:
    if doc["config"].get("profile"):
        return profile_markdown(doc)
    return results_markdown(doc)


# -- docs/benchmarks.md --------------------------------------------------------------


def _replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + block + "\n"


def run_summary(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    text = (
        f"{cfg['broadcasts']} broadcasts at {cfg['interval_s'] * 1000:.0f} ms "
        f"intervals for latency; bursts of about {cfg['burst_deliveries']:,} "
        f"deliveries; echo on {cfg.get('echo_sockets', 0)} sockets x "
        f"{cfg.get('echo_rounds', 0)}; {gc_setting(cfg)} in the Python servers"
    )
    if doc.get("wall_s") is not None:
        text += f"; whole run {doc['wall_s'] / 60:.1f} min"
    return text + "."


def gc_setting(cfg: dict[str, Any]) -> str:
    parts = []
    if cfg.get("tune_gc"):
        parts.append("trio_cable.tune_gc()")
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
        body = machine + "\n" + run_summary(doc) + "\n\n" + results_markdown(doc)
        tuned = cfg.get("tune_gc") or cfg.get("gc_threshold") or cfg.get("gc_freeze")
        text = _replace_block(text, "results-gc" if tuned else "results", body)
    path.write_text(text)
