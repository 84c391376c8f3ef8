// Drives the official @rails/actioncable client from tests.
//
// Reads newline-delimited JSON commands on stdin, writes newline-delimited
// JSON events on stdout (one event per line). Logs go to stderr only, so
// stdout stays a clean event stream. See nodeclient.py for the Python side.
//
// Commands:
//   {"cmd":"connect","url":"ws://...","trace":false}
//   {"cmd":"subscribe","key":"k1","channel":"ChatChannel","params":{...}}
//       (without "channel", "params" is used as-is, key order included)
//   {"cmd":"perform","key":"k1","action":"speak","data":{...}}
//   {"cmd":"send","key":"k1","data":{...}}
//   {"cmd":"unsubscribe","key":"k1"}
//   {"cmd":"disconnect"}
//   {"cmd":"raw","text":"..."}          a raw text frame on the current socket
//   {"cmd":"visibility","state":"hidden"|"visible"}
//   {"cmd":"exit"}
// Events:
//   ready, connected {key, reconnected, identifier}, received {key, data},
//   rejected {key, identifier}, disconnected {key, willAttemptReconnect},
//   socket_open {protocol}, socket_close {code, reason}, socket_error {error},
//   frame {data} (only with "trace": true), uncaught {error, where?},
//   not_sent {cmd, key} (the client dropped it: socket not open),
//   error {cmd, error} (a bad command for this driver).
// A received event has no "data" key when the client passed undefined.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../../js/package.json", import.meta.url));
const { WebSocket: WsWebSocket } = require("ws");

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

// Keep running after errors so tests can assert that nothing broke.
process.on("uncaughtException", (err) => {
  console.error(err);
  emit({ event: "uncaught", error: String(err) });
});
process.on("unhandledRejection", (err) => {
  console.error(err);
  emit({ event: "uncaught", error: String(err) });
});
process.stdout.on("error", () => process.exit(0)); // the reader went away

let trace = false;
let currentSocket = null;

// Reports socket-level events. Listeners added with addEventListener run
// before the client's on* handlers, so a traced frame precedes its effects.
class TracingWebSocket extends WsWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    currentSocket = this;
    this.addEventListener("open", () => emit({ event: "socket_open", protocol: this.protocol }));
    this.addEventListener("close", (e) => emit({ event: "socket_close", code: e.code, reason: e.reason }));
    this.addEventListener("error", (e) => emit({ event: "socket_error", error: e.message }));
    this.addEventListener("message", (e) => {
      if (trace) emit({ event: "frame", data: e.data });
    });
  }
}

// In a browser an exception thrown by an event handler is reported and the
// socket carries on. Under ws it escapes from the frame parser and wedges the
// socket (no later frame is ever parsed), so report and swallow it here.
for (const name of ["onopen", "onmessage", "onclose", "onerror"]) {
  const parent = Object.getOwnPropertyDescriptor(WsWebSocket.prototype, name);
  Object.defineProperty(TracingWebSocket.prototype, name, {
    get() {
      return parent.get.call(this);
    },
    set(handler) {
      if (typeof handler !== "function") return parent.set.call(this, handler);
      parent.set.call(this, function (event) {
        try {
          return handler.call(this, event);
        } catch (err) {
          console.error(err);
          emit({ event: "uncaught", error: String(err), where: name });
        }
      });
    },
  });
}

// The three shims the client needs outside a browser. They must exist before
// the client module is evaluated: it captures WebSocket at load time.
globalThis.WebSocket = TracingWebSocket;
const windowEvents = new EventTarget();
globalThis.addEventListener = windowEvents.addEventListener.bind(windowEvents);
globalThis.removeEventListener = windowEvents.removeEventListener.bind(windowEvents);
const documentEvents = new EventTarget();
globalThis.document = {
  visibilityState: "visible",
  addEventListener: documentEvents.addEventListener.bind(documentEvents),
  removeEventListener: documentEvents.removeEventListener.bind(documentEvents),
};

const ActionCable = require("@rails/actioncable");
// The default logger is console.log, which would corrupt the event stream.
ActionCable.adapters.logger = { log: (...args) => console.error(...args) };
ActionCable.logger.enabled = process.env.AC_DEBUG === "1";

let consumer = null;
const subscriptions = new Map();

function subscription(key) {
  const sub = subscriptions.get(key);
  if (!sub) throw new Error(`no subscription with key ${JSON.stringify(key)}`);
  return sub;
}

function subscribe({ key, channel, params = {} }) {
  if (!consumer) throw new Error("subscribe before connect");
  if (subscriptions.has(key)) throw new Error(`key ${JSON.stringify(key)} is in use`);
  const identifierParams = channel === undefined ? params : { channel, ...params };
  const sub = consumer.subscriptions.create(identifierParams, {
    connected(info) {
      emit({ event: "connected", key, reconnected: Boolean(info?.reconnected), identifier: this.identifier });
    },
    received(data) {
      emit({ event: "received", key, data });
    },
    rejected() {
      subscriptions.delete(key);
      emit({ event: "rejected", key, identifier: this.identifier });
    },
    disconnected(info) {
      emit({ event: "disconnected", key, willAttemptReconnect: Boolean(info?.willAttemptReconnect) });
    },
  });
  subscriptions.set(key, sub);
}

function exit() {
  if (consumer) consumer.disconnect();
  // Give the close handshake a moment, and flush stdout before leaving.
  setTimeout(() => process.stdout.write("", () => process.exit(0)), 200);
}

const commands = {
  connect({ url, trace: wantTrace = false }) {
    trace = Boolean(wantTrace);
    if (!consumer) {
      consumer = ActionCable.createConsumer(url);
    } else if (url !== undefined && url !== consumer.url) {
      throw new Error("connect: already have a consumer for another url");
    }
    consumer.connect();
  },
  subscribe,
  perform({ key, action, data = {} }) {
    if (!subscription(key).perform(action, data)) emit({ event: "not_sent", cmd: "perform", key });
  },
  send({ key, data = {} }) {
    if (!subscription(key).send(data)) emit({ event: "not_sent", cmd: "send", key });
  },
  unsubscribe({ key }) {
    subscription(key).unsubscribe();
    subscriptions.delete(key);
  },
  disconnect() {
    if (consumer) consumer.disconnect();
  },
  raw({ text }) {
    if (currentSocket?.readyState === WsWebSocket.OPEN) currentSocket.send(text);
    else emit({ event: "not_sent", cmd: "raw" });
  },
  visibility({ state }) {
    document.visibilityState = state;
    // visibilitychange fires on document and bubbles to window.
    documentEvents.dispatchEvent(new Event("visibilitychange"));
    windowEvents.dispatchEvent(new Event("visibilitychange"));
  },
  exit,
};

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
    const handler = Object.hasOwn(commands, cmd.cmd) ? commands[cmd.cmd] : null;
    if (!handler) throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
    handler(cmd);
  } catch (err) {
    emit({ event: "error", cmd: cmd?.cmd ?? null, error: String(err) });
  }
});
lines.on("close", exit); // stdin closed: the test is done with us

emit({ event: "ready" });
