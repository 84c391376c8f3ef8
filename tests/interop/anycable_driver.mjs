// Drives AnyCable's own client, @anycable/web (on @anycable/core), from tests.
//
// The same line protocol as ac_driver.mjs (see nodeclient.py): commands in
// on stdin, events out on stdout, one JSON object per line; logs on stderr.
//
// Commands:
//   {"cmd":"connect","url":"ws://...","protocol":"actioncable-v1-ext-json",
//    "options":{...},          extra createCable options (e.g. protocolOptions)
//    "reconnectDelay":300}     ms before each reconnect (default: AnyCable's backoff)
//   {"cmd":"subscribe","key":"k1","channel":"ChatChannel","params":{...}}
//   {"cmd":"perform","key":"k1","action":"speak","data":{...}}
//   {"cmd":"whisper","key":"k1","data":{...}}
//   {"cmd":"stream","key":"k1","name":"..."}        cable.streamFrom
//   {"cmd":"stream_signed","key":"k1","name":"..."} cable.streamFromSigned
//   {"cmd":"presence_join","key":"k1","id":"...","info":{...}}  channel.presence.join
//   {"cmd":"presence_leave","key":"k1"}                          channel.presence.leave
//   {"cmd":"presence_info","key":"k1"}     channel.presence.info() -> presence_state
//   {"cmd":"disconnect"}  {"cmd":"exit"}
// Events:
//   ready; cable_connect {reconnect, restored}; cable_disconnect {reason};
//   cable_close {reason}; connect {key, reconnect, restored};
//   message {key, data, meta}; info {key, type}; rejected {key, error};
//   subscribed {key}; socket_open {protocol}; socket_close {code};
//   socket_error {error}; uncaught {error}; error {cmd, error};
//   presence {key, data} (each join/leave/info frame); presence_state {key, state}.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(new URL("../../js/package.json", import.meta.url));
const { WebSocket: WsWebSocket } = require("ws");
const { createCable } = await import(
  new URL("../../js/node_modules/@anycable/web/index.js", import.meta.url)
);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

process.on("uncaughtException", (err) => {
  console.error(err);
  emit({ event: "uncaught", error: String(err) });
});
process.on("unhandledRejection", (err) => {
  console.error(err);
  emit({ event: "uncaught", error: String(err) });
});
process.stdout.on("error", () => process.exit(0));

class TracingWebSocket extends WsWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.addEventListener("open", () => emit({ event: "socket_open", protocol: this.protocol, url: String(url) }));
    this.addEventListener("close", (e) => emit({ event: "socket_close", code: e.code }));
    this.addEventListener("error", (e) => emit({ event: "socket_error", error: e.message }));
  }
}

let cable = null;
const channels = new Map();

function watch(key, channel) {
  channels.set(key, channel);
  channel.on("connect", (ev) => emit({ event: "connect", key, reconnect: ev.reconnect, restored: ev.restored }));
  channel.on("message", (data, meta) => emit({ event: "message", key, data, meta: meta ?? null }));
  channel.on("info", (ev) => emit({ event: "info", key, type: ev.type }));
  channel.on("presence", (data) => emit({ event: "presence", key, data }));
  channel.on("close", (err) => emit({ event: "closed", key, error: err ? String(err) : null }));
}

function subscribed(key, promise) {
  promise.then(
    () => emit({ event: "subscribed", key }),
    (err) => emit({ event: "rejected", key, error: String(err) }),
  );
}

function channel(key) {
  const found = channels.get(key);
  if (!found) throw new Error(`no channel with key ${JSON.stringify(key)}`);
  return found;
}

const commands = {
  connect({ url, protocol = "actioncable-v1-ext-json", options = {}, reconnectDelay }) {
    if (cable) throw new Error("connect: already connected");
    if (reconnectDelay !== undefined) options = { ...options, reconnectStrategy: () => reconnectDelay };
    cable = createCable(url, {
      protocol,
      websocketImplementation: TracingWebSocket,
      logLevel: process.env.AC_DEBUG === "1" ? "debug" : "error",
      logger: {
        debug: (...a) => process.env.AC_DEBUG === "1" && console.error("debug", ...a),
        info: (...a) => process.env.AC_DEBUG === "1" && console.error("info", ...a),
        warn: (...a) => console.error("warn", ...a),
        error: (...a) => console.error("error", ...a),
      },
      ...options,
    });
    cable.on("connect", (ev) => emit({ event: "cable_connect", reconnect: ev.reconnect, restored: ev.restored }));
    cable.on("disconnect", (ev) => emit({ event: "cable_disconnect", reason: ev?.reason ?? null }));
    cable.on("close", (ev) => emit({ event: "cable_close", reason: ev?.reason ?? null }));
    cable.connect().catch((err) => emit({ event: "connect_failed", error: String(err) }));
  },
  subscribe({ key, channel: name, params = {} }) {
    const ch = cable.subscribeTo(name, params);
    watch(key, ch);
    subscribed(key, ch.ensureSubscribed());
  },
  stream({ key, name }) {
    const ch = cable.streamFrom(name);
    watch(key, ch);
    subscribed(key, ch.ensureSubscribed());
  },
  stream_signed({ key, name }) {
    const ch = cable.streamFromSigned(name);
    watch(key, ch);
    subscribed(key, ch.ensureSubscribed());
  },
  perform({ key, action, data = {} }) {
    channel(key).perform(action, data).catch((err) => emit({ event: "error", cmd: "perform", error: String(err) }));
  },
  whisper({ key, data = {} }) {
    channel(key).whisper(data).catch((err) => emit({ event: "error", cmd: "whisper", error: String(err) }));
  },
  presence_join({ key, id, info }) {
    channel(key).presence.join(id, info).catch((err) => emit({ event: "error", cmd: "presence_join", error: String(err) }));
  },
  presence_leave({ key }) {
    channel(key).presence.leave().catch((err) => emit({ event: "error", cmd: "presence_leave", error: String(err) }));
  },
  presence_info({ key }) {
    channel(key).presence.info().then(
      (state) => emit({ event: "presence_state", key, state }),
      (err) => emit({ event: "error", cmd: "presence_info", error: String(err) }),
    );
  },
  disconnect() {
    if (cable) cable.disconnect();
  },
  exit() {
    if (cable) cable.disconnect();
    setTimeout(() => process.stdout.write("", () => process.exit(0)), 200);
  },
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
lines.on("close", () => commands.exit());

emit({ event: "ready" });
