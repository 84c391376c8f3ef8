// Load generator for the benchmarks: many Action Cable sockets in one Node
// process, driven by run.py over stdin/stdout (newline-delimited JSON).
//
// run.py starts two of these so the generator is not the bottleneck; each
// reports its own CPU use (process.cpuUsage) so the results can show that.
//
// Commands (stdin), one JSON object a line:
//   {"cmd":"connect","url":"ws://...","n":2500,"concurrency":100,"timeout_ms":60000}
//       open n sockets (subprotocol actioncable-v1-json), wait for welcome,
//       subscribe each to BenchChannel, wait for the confirmation
//   {"cmd":"measure","phase":"p1","expect":50000,"timeout_ms":30000,"latencies":true}
//       count data frames of that phase until `expect` arrived or the time cap
//   {"cmd":"echo","sockets":100,"rounds":5,"timeout_ms":20000}
//       on that many sockets at once, perform BenchChannel's `echo` action
//       `rounds` times one after the other (each waits for the last reply);
//       every reply's round-trip time in ms
//   {"cmd":"close"}   close every socket, then exit
// Events (stdout), one JSON object a line:
//   ready; connected {...}; armed {phase}; measured {...}; echoed {...}; closed
// Data frames carry {"p": phase, "s": seq, "t": server time.time() in ms}:
// both ends read the same machine clock, so arrival - t is the latency.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";

// the `ws` package of the Node reference server (node-ref/package.json)
const require = createRequire(new URL("./node-ref/package.json", import.meta.url));
const { WebSocket } = require("ws");

const PROTOCOL = "actioncable-v1-json";
const IDENTIFIER = JSON.stringify({ channel: "BenchChannel" });
const SUBSCRIBE = JSON.stringify({ command: "subscribe", identifier: IDENTIFIER });

const now = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function quantiles(values) {
  if (values.length === 0) return { p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] };
}

const sockets = [];
const counters = { closed: 0, errors: 0, disconnectFrames: 0, pings: 0 };
let phase = null; // the measurement under way, or null
let echo = null; // the echo round under way, or null

function onFrame(ws, data) {
  const arrival = now();
  let frame;
  try {
    frame = JSON.parse(data);
  } catch {
    return;
  }
  const message = frame.message;
  if (frame.type === "ping") {
    counters.pings += 1;
    return;
  }
  if (frame.type === "disconnect") {
    counters.disconnectFrames += 1;
    return;
  }
  if (message === undefined || frame.identifier !== IDENTIFIER) return;
  if (message.action === "echo") {
    onEcho(ws, message, arrival);
    return;
  }
  if (phase === null) return;
  if (message.p !== phase.name) return;
  phase.received += 1;
  if (message.t < phase.minSent) phase.minSent = message.t;
  if (phase.firstArrival === null) phase.firstArrival = arrival;
  phase.lastArrival = arrival;
  if (phase.latencies !== null) {
    const latency = Math.round((arrival - message.t) * 100) / 100;
    phase.latencies.push(latency);
    const seq = (phase.perSeq[message.s] ??= [0, 0]); // deliveries, max latency
    seq[0] += 1;
    if (latency > seq[1]) seq[1] = latency;
  }
  if (phase.received >= phase.expect) finishPhase();
}

function openOne(url, timeoutMs) {
  // Resolves with connect+subscribe time in ms, or rejects.
  return new Promise((resolve, reject) => {
    const started = now();
    const ws = new WebSocket(url, [PROTOCOL], {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: timeoutMs,
    });
    let confirmed = false;
    const timer = setTimeout(() => {
      if (!confirmed) {
        ws.terminate();
        reject(new Error("connect+subscribe timed out"));
      }
    }, timeoutMs);
    ws.on("message", (data) => {
      if (confirmed) {
        onFrame(ws, data);
        return;
      }
      const frame = JSON.parse(data);
      if (frame.type === "welcome") {
        ws.send(SUBSCRIBE);
      } else if (frame.type === "confirm_subscription" && frame.identifier === IDENTIFIER) {
        confirmed = true;
        clearTimeout(timer);
        sockets.push(ws);
        resolve(now() - started);
      } else if (frame.type === "reject_subscription") {
        clearTimeout(timer);
        ws.terminate();
        reject(new Error("subscription rejected"));
      }
    });
    ws.on("error", (err) => {
      counters.errors += 1;
      if (!confirmed) {
        clearTimeout(timer);
        reject(err);
      }
    });
    ws.on("close", () => {
      if (confirmed) counters.closed += 1;
      else {
        clearTimeout(timer);
        reject(new Error("closed before confirmation"));
      }
    });
  });
}

async function connect({ url, n, concurrency = 100, timeout_ms: timeoutMs = 60000 }) {
  const started = now();
  const cpu0 = process.cpuUsage();
  const deadline = started + timeoutMs;
  const times = [];
  const errors = {};
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < n && now() < deadline) {
      next += 1;
      try {
        times.push(await openOne(url, Math.max(1, deadline - now())));
      } catch (err) {
        failed += 1;
        const key = String(err.message || err).slice(0, 80);
        errors[key] = (errors[key] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  const cpu = process.cpuUsage(cpu0);
  emit({
    event: "connected",
    ok: times.length,
    failed,
    errors,
    elapsed_ms: now() - started,
    cpu_ms: (cpu.user + cpu.system) / 1000,
    connect_ms: quantiles(times),
  });
}

function measure({ phase: name, expect, timeout_ms: timeoutMs, latencies }) {
  phase = {
    name,
    expect,
    received: 0,
    minSent: Infinity,
    firstArrival: null,
    lastArrival: null,
    latencies: latencies ? [] : null,
    perSeq: {},
    armedAt: now(),
    cpu: process.cpuUsage(),
    counters: { ...counters },
    timer: null,
  };
  phase.timer = setTimeout(finishPhase, timeoutMs);
  emit({ event: "armed", phase: name });
}

function finishPhase() {
  const p = phase;
  if (p === null) return;
  phase = null;
  clearTimeout(p.timer);
  const cpu = process.cpuUsage(p.cpu);
  const wall = now() - p.armedAt;
  emit({
    event: "measured",
    phase: p.name,
    expect: p.expect,
    received: p.received,
    min_sent: Number.isFinite(p.minSent) ? p.minSent : null,
    first_arrival: p.firstArrival,
    last_arrival: p.lastArrival,
    latencies: p.latencies,
    per_seq: p.perSeq,
    cpu_ms: (cpu.user + cpu.system) / 1000,
    wall_ms: wall,
    open_sockets: sockets.length - counters.closed,
    closed: counters.closed - p.counters.closed,
    errors: counters.errors - p.counters.errors,
    disconnect_frames: counters.disconnectFrames - p.counters.disconnectFrames,
    pings: counters.pings - p.counters.pings,
  });
}

function sendEcho(ws, round) {
  const data = JSON.stringify({ action: "echo", r: round, t: now() });
  ws.send(JSON.stringify({ command: "message", identifier: IDENTIFIER, data }));
}

function onEcho(ws, message, arrival) {
  const e = echo;
  if (e === null || !e.left.has(ws)) return;
  e.rtts.push(Math.round((arrival - message.t) * 1000) / 1000);
  const left = e.left.get(ws) - 1;
  if (left > 0) {
    e.left.set(ws, left);
    sendEcho(ws, e.rounds - left);
  } else {
    e.left.delete(ws);
    if (e.left.size === 0) finishEcho();
  }
}

function startEcho({ sockets: k, rounds, timeout_ms: timeoutMs }) {
  const chosen = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).slice(0, k);
  echo = {
    rounds,
    expect: chosen.length * rounds,
    left: new Map(chosen.map((ws) => [ws, rounds])),
    rtts: [],
    started: now(),
    cpu: process.cpuUsage(),
    timer: null,
  };
  echo.timer = setTimeout(finishEcho, timeoutMs);
  if (chosen.length === 0) finishEcho();
  for (const ws of chosen) sendEcho(ws, 0);
}

function finishEcho() {
  const e = echo;
  if (e === null) return;
  echo = null;
  clearTimeout(e.timer);
  const cpu = process.cpuUsage(e.cpu);
  emit({
    event: "echoed",
    expect: e.expect,
    received: e.rtts.length,
    rtts: e.rtts,
    cpu_ms: (cpu.user + cpu.system) / 1000,
    wall_ms: now() - e.started,
  });
}

function closeAll() {
  for (const ws of sockets) ws.terminate();
  emit({ event: "closed" });
  process.exit(0);
}

process.stdout.on("error", () => process.exit(0)); // the driver went away
process.stdin.on("end", () => process.exit(0)); // ... or closed our stdin

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.cmd === "connect") connect(command);
  else if (command.cmd === "measure") measure(command);
  else if (command.cmd === "echo") startEcho(command);
  else if (command.cmd === "close") closeAll();
  else emit({ event: "error", error: `unknown command ${command.cmd}` });
});
emit({ event: "ready", pid: process.pid });
