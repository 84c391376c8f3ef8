// The Node reference server: the least Action Cable a `ws` server needs to
// do for the benchmark, to show what the load generator and this machine
// can take (the ceiling the Python servers are measured against).
//
//   node --expose-gc server.mjs --port PORT [--host 127.0.0.1]
//
// It does what bench_app.py does for run.py and loadgen.mjs, no more:
// `welcome`; `confirm_subscription` for BenchChannel (which joins the
// broadcast set) and BenchControl (the driver's remote control); a `ping`
// to every socket every 3 s; BenchChannel's `echo` action; BenchControl's
// `series`, `burst`, `gc` and `memory` actions. A broadcast serialises its
// frame once and writes that same buffer to every subscribed socket. No
// authorisation, limits or slow-client policy: a floor, not a server.

import { createServer } from "node:http";
import { createRequire } from "node:module";
import { PerformanceObserver, performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const { WebSocketServer, WebSocket } = require("ws");

const PROTOCOL = "actioncable-v1-json";
const BENCH_CHANNEL = "BenchChannel";
const CONTROL_CHANNEL = "BenchControl";
const BENCH_IDENTIFIER = JSON.stringify({ channel: BENCH_CHANNEL });
const PREFIX = `{"identifier":${JSON.stringify(BENCH_IDENTIFIER)},"message":`;
const PING_INTERVAL_MS = 3000;

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
  },
});
if (!args.port) throw new Error("--port is required");

const now = () => performance.timeOrigin + performance.now(); // epoch ms, sub-ms
const subscribers = new Set();

// -- broadcasts -------------------------------------------------------------------

function payload(phase, seq, pad) {
  return { p: phase, s: seq, t: now(), x: pad };
}

function padding(size) {
  return "x".repeat(Math.max(0, Math.min(Number(size ?? 100), 65536)));
}

function broadcast(message) {
  // One serialisation, one buffer, written as a text frame to every socket.
  const frame = Buffer.from(PREFIX + JSON.stringify(message) + "}");
  for (const ws of subscribers) {
    if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: false });
  }
}

const sleepUntil = (deadline) =>
  new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - performance.now())));
const yieldToIO = () => new Promise((resolve) => setImmediate(resolve));

// -- garbage-collector pauses, in bench_common.gc_action's shape -----------------------

let gcStats;
function resetGcStats() {
  const previous = gcStats;
  gcStats = {};
  for (const g of ["0", "1", "2"]) gcStats[g] = { count: 0, total_ms: 0, max_ms: 0 };
  return previous;
}
resetGcStats();
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    // minor (scavenge) -> "0", major (mark-compact) -> "2", the rest -> "1"
    const kind = entry.detail?.kind;
    const g = kind === 1 ? "0" : kind === 4 ? "2" : "1";
    const s = gcStats[g];
    s.count += 1;
    s.total_ms += entry.duration;
    s.max_ms = Math.max(s.max_ms, entry.duration);
  }
}).observe({ entryTypes: ["gc"] });

// -- the control actions ------------------------------------------------------------

const actions = {
  async series(data, reply) {
    const pad = padding(data.size);
    const count = Math.min(Number(data.count), 1000);
    const start = performance.now();
    for (let seq = 0; seq < count; seq += 1) {
      await sleepUntil(start + seq * Number(data.interval) * 1000);
      broadcast(payload(data.phase, seq, pad));
    }
    reply({ done: "series", phase: data.phase });
  },
  async burst(data, reply) {
    const pad = padding(data.size);
    const count = Math.min(Number(data.count), 100000);
    const started = performance.now();
    for (let seq = 0; seq < count; seq += 1) {
      broadcast(payload(data.phase, seq, pad));
      await yieldToIO(); // as the Python servers yield between broadcasts
    }
    reply({ done: "burst", phase: data.phase, enqueue_ms: performance.now() - started });
  },
  async gc(data, reply) {
    if ((data.collect || data.freeze) && globalThis.gc) globalThis.gc();
    reply({ done: "gc", stats: resetGcStats(), threshold: null, frozen: 0 });
  },
  async memory(data, reply) {
    reply({ done: "memory", error: "no allocation tracing in the Node reference" });
  },
};

// -- connections -------------------------------------------------------------------

function send(ws, object) {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(object));
}

function onCommand(ws, text) {
  let command;
  let channel;
  try {
    command = JSON.parse(text);
    channel = JSON.parse(command.identifier).channel;
  } catch {
    return;
  }
  const { identifier } = command;
  if (command.command === "subscribe") {
    if (channel === BENCH_CHANNEL) subscribers.add(ws);
    const known = channel === BENCH_CHANNEL || channel === CONTROL_CHANNEL;
    send(ws, { identifier, type: known ? "confirm_subscription" : "reject_subscription" });
  } else if (command.command === "unsubscribe") {
    if (channel === BENCH_CHANNEL) subscribers.delete(ws);
  } else if (command.command === "message") {
    let data;
    try {
      data = JSON.parse(command.data);
    } catch {
      return;
    }
    const reply = (message) => send(ws, { identifier, message });
    if (channel === BENCH_CHANNEL && data.action === "echo") reply(data);
    else if (channel === CONTROL_CHANNEL && Object.hasOwn(actions, data.action)) {
      actions[data.action](data, reply).catch((err) => {
        console.error(err);
        reply({ done: data.action, error: String(err) });
      });
    }
  }
}

const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  skipUTF8Validation: true,
  maxPayload: 1 << 20,
  handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
});

wss.on("connection", (ws) => {
  ws.on("message", (data) => onCommand(ws, data.toString()));
  ws.on("close", () => subscribers.delete(ws));
  ws.on("error", () => {});
  ws.send('{"type":"welcome"}');
});

// POST /_broadcast: the series or burst run by an HTTP request, as a web
// controller would broadcast (run.py's HTTP-triggered phases).
const server = createServer((request, response) => {
  if (request.method !== "POST" || request.url !== "/_broadcast") {
    response.writeHead(404).end();
    return;
  }
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const data = JSON.parse(Buffer.concat(chunks).toString());
    const reply = (message) => {
      const body = JSON.stringify(message);
      response
        .writeHead(200, {
          "content-type": "application/json",
          "content-length": Buffer.byteLength(body),
        })
        .end(body);
    };
    actions[data.action](data, reply).catch((err) => reply({ done: data.action, error: String(err) }));
  });
});
server.on("upgrade", (request, socket, head) => {
  if (new URL(request.url, "http://localhost").pathname !== "/cable") {
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request));
});

setInterval(() => {
  const frame = Buffer.from(
    JSON.stringify({ type: "ping", message: Math.floor(Date.now() / 1000) }),
  );
  for (const ws of wss.clients) {
    if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: false });
  }
}, PING_INTERVAL_MS);

// a large backlog, as the Python servers get, so connect bursts are not dropped
server.listen({ host: args.host, port: Number(args.port), backlog: 4096 }, () => {
  console.log(`listening on ${args.host}:${args.port}`);
});
