// Load generator for benchmarks/recovery_bench.py: many clients of the
// extended protocol (actioncable-v1-ext-json) in one Node process, each
// keeping its session id and its stream position, so that after their
// sockets are cut all at once they reconnect and recover what they missed,
// as @anycable/core does (restored: `history` from the last position;
// not restored: `subscribe` with that history).
//
// Commands (stdin), one JSON object a line:
//   {"cmd":"connect","url":"ws://...","n":5000,"concurrency":200,"timeout_ms":120000}
//       open n clients, subscribe each to FeedChannel (history since now)
//   {"cmd":"wait","count":5,"timeout_ms":30000}
//       until every client has received numbers 0..count-1
//   {"cmd":"cut","count":55,"away_ms":1000,"timeout_ms":120000,"retry_ms":[100,600]}
//       terminate every socket at once (no close frame: a broken network),
//       then after away_ms reconnect every client at once (retrying a
//       failed attempt after a random delay in retry_ms), and report when
//       every client has received numbers 0..count-1, or at the time cap
//   {"cmd":"close"}   close every socket, then exit
// Events (stdout): ready; connected {...}; waited {...}; cut {epoch_ms};
// recovered {...} (times in ms from the start of the wait or of the
// reconnects, at started_epoch_ms).
// A message is {"n": <number>}; each client counts what it received:
// duplicates (n below the next expected), gaps (n above it: those between
// are lost unless they come later, which is counted as out of order too).

import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";

const require = createRequire(new URL("./node-ref/package.json", import.meta.url));
const { WebSocket } = require("ws");

const PROTOCOL = "actioncable-v1-ext-json";
const IDENTIFIER = JSON.stringify({ channel: "FeedChannel" });
const now = () => performance.now();

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function quantiles(values) {
  if (values.length === 0) return { p50: null, p99: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const round = (v) => Math.round(v * 10) / 10;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(sorted[sorted.length - 1]) };
}

const counters = {
  attempts: 0, failedAttempts: 0, restored: 0, resubscribed: 0,
  historyConfirmed: 0, historyRejected: 0, duplicates: 0, gaps: 0,
  replayed: 0, unexpected: 0,
};
const failures = {}; // failed attempts by reason
let url = null;
const clients = [];
let goal = null; // {count, onClient(client), ...} while a wait or recovery runs

class Client {
  constructor() {
    this.ws = null;
    this.sid = null;
    this.position = null; // {stream, epoch, offset}
    this.next = 0; // the next number expected
    this.inHistory = false; // between asking for history and its answer
    this.doneAt = null;
    this.historyAt = null; // when the history asked for after a cut came
  }

  open(onReady, onFail, timeoutMs) {
    counters.attempts += 1;
    const target = this.sid === null ? url : `${url}?sid=${encodeURIComponent(this.sid)}`;
    const ws = new WebSocket(target, [PROTOCOL], {
      perMessageDeflate: false,
      skipUTF8Validation: true,
      handshakeTimeout: timeoutMs,
    });
    this.ws = ws;
    let ready = false;
    const fail = (why) => {
      if (ready || this.ws !== ws) return;
      this.ws = null;
      ws.terminate();
      counters.failedAttempts += 1;
      const key = String(why).slice(0, 60);
      failures[key] = (failures[key] ?? 0) + 1;
      onFail(why);
    };
    ws.on("error", (err) => fail(err.message || String(err)));
    ws.on("close", () => fail("closed before confirmation"));
    ws.on("message", (data) => {
      const frame = JSON.parse(data);
      if (frame.type === "ping") return;
      if (frame.type === "welcome") {
        this.sid = frame.sid ?? null;
        if (frame.restored && (frame.restored_ids ?? []).includes(IDENTIFIER)) {
          counters.restored += 1;
          ready = true;
          this.askHistory();
          onReady();
        } else {
          if (this.position !== null) counters.resubscribed += 1;
          ws.send(JSON.stringify(this.subscribeCommand()));
        }
        return;
      }
      if (frame.identifier !== IDENTIFIER) return;
      if (frame.type === "confirm_subscription") {
        if (!ready) {
          ready = true;
          onReady();
        }
      } else if (frame.type === "reject_subscription") {
        fail("subscription rejected");
      } else if (frame.type === "confirm_history") {
        this.inHistory = false;
        counters.historyConfirmed += 1;
        if (goal !== null && this.historyAt === null) this.historyAt = now();
        this.checkDone();
      } else if (frame.type === "reject_history") {
        this.inHistory = false;
        counters.historyRejected += 1;
        this.checkDone();
      } else if (frame.message !== undefined && frame.type === undefined) {
        this.received(frame);
      } else {
        counters.unexpected += 1;
      }
    });
  }

  history() {
    if (this.position === null) return { since: Math.floor(Date.now() / 1000) - 1 };
    const { stream, epoch, offset } = this.position;
    return { streams: { [stream]: { epoch, offset } } };
  }

  subscribeCommand() {
    this.inHistory = true;
    return { command: "subscribe", identifier: IDENTIFIER, history: this.history() };
  }

  askHistory() {
    this.inHistory = true;
    this.ws.send(JSON.stringify({ command: "history", identifier: IDENTIFIER, history: this.history() }));
  }

  received(frame) {
    if (frame.stream_id !== undefined) {
      this.position = { stream: frame.stream_id, epoch: frame.epoch, offset: frame.offset };
    }
    if (this.inHistory) counters.replayed += 1;
    const n = frame.message.n;
    if (n < this.next) counters.duplicates += 1;
    else {
      if (n > this.next) counters.gaps += 1;
      this.next = n + 1;
    }
    this.checkDone();
  }

  checkDone() {
    // Done: every number, and the history it asked for answered.
    if (goal !== null && this.doneAt === null && this.next >= goal.count && !this.inHistory) {
      this.doneAt = now();
      goal.done += 1;
      if (goal.done === clients.length) goal.finish();
    }
  }

  cut() {
    const ws = this.ws;
    this.ws = null;
    if (ws !== null) ws.terminate();
  }
}

function openWithRetry(client, deadline, retry) {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (now() > deadline) return reject(new Error("no connection before the time cap"));
      client.open(resolve, () => {
        const [low, high] = retry;
        setTimeout(attempt, low + Math.random() * (high - low));
      }, Math.max(1, deadline - now()));
    };
    attempt();
  });
}

async function connect({ url: target, n, concurrency = 200, timeout_ms: timeoutMs = 120000 }) {
  url = target;
  const started = now();
  const deadline = started + timeoutMs;
  let next = 0;
  let failed = 0;
  async function worker() {
    while (next < n) {
      next += 1;
      const client = new Client();
      try {
        await openWithRetry(client, deadline, [100, 600]);
        clients.push(client);
      } catch {
        failed += 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  emit({ event: "connected", ok: clients.length, failed, elapsed_ms: now() - started, counters: { ...counters } });
}

function startGoal(count, timeoutMs, report) {
  const started = now();
  for (const key of Object.keys(failures)) delete failures[key]; // this phase's
  for (const client of clients) {
    client.doneAt = client.next >= count ? started : null;
    client.historyAt = null;
  }
  goal = {
    count,
    done: clients.filter((c) => c.doneAt !== null).length,
    started,
    startedEpoch: Date.now(),
    baseline: { ...counters },
  };
  goal.finish = () => {
    const g = goal;
    if (g === null) return;
    goal = null;
    clearTimeout(g.timer);
    report(g);
  };
  goal.timer = setTimeout(goal.finish, timeoutMs);
  if (goal.done === clients.length) goal.finish();
}

function summary(g) {
  const missing = clients.filter((c) => c.next < g.count);
  const phase = {};
  for (const [key, value] of Object.entries(counters)) phase[key] = value - g.baseline[key];
  return {
    clients: clients.length,
    complete: clients.length - missing.length,
    started_epoch_ms: g.startedEpoch,
    elapsed_ms: Math.round(now() - g.started),
    done_ms: quantiles(clients.filter((c) => c.doneAt !== null).map((c) => c.doneAt - g.started)),
    // until confirm_history: everything missed replayed
    history_ms: quantiles(clients.filter((c) => c.historyAt !== null).map((c) => c.historyAt - g.started)),
    // numbers never received (below each client's next: gaps that stayed)
    lost: clients.reduce((sum, c) => sum + Math.max(0, g.count - c.next), 0),
    counters: phase, // this phase's
    failures: { ...failures },
    cpu_ms: Math.round(process.cpuUsage().user / 1000 + process.cpuUsage().system / 1000),
  };
}

function wait({ count, timeout_ms: timeoutMs = 30000 }) {
  startGoal(count, timeoutMs, (g) => emit({ event: "waited", ...summary(g) }));
}

function cut({ count, away_ms: awayMs = 1000, timeout_ms: timeoutMs = 120000, retry_ms: retry = [100, 600] }) {
  for (const client of clients) client.cut();
  emit({ event: "cut", epoch_ms: Date.now() });
  setTimeout(() => {
    startGoal(count, timeoutMs, (g) => emit({ event: "recovered", ...summary(g) }));
    const deadline = now() + timeoutMs;
    for (const client of clients) {
      openWithRetry(client, deadline, retry).catch(() => {});
    }
  }, awayMs);
}

process.stdout.on("error", () => process.exit(0));
process.stdin.on("end", () => process.exit(0));

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  if (command.cmd === "connect") connect(command);
  else if (command.cmd === "wait") wait(command);
  else if (command.cmd === "cut") cut(command);
  else if (command.cmd === "close") {
    for (const client of clients) client.cut();
    process.exit(0);
  } else emit({ event: "error", error: `unknown command ${command.cmd}` });
});
emit({ event: "ready", pid: process.pid });
