// Unit tests for the browser client, trio_cable/static/cable.js (its only
// copy), with a scripted fake WebSocket and fake timers: frame handling,
// backoff schedule, resubscribe, stale detection.
// Run: npm test  (from js/; or npm test --prefix js)

import assert from "node:assert/strict"
import { afterEach, beforeEach, describe, it, mock } from "node:test"

import {
  backoffDelay,
  Cable,
  CallError,
  createCable,
  DEFAULTS,
  EXT_PROTOCOL,
  identifierFor,
  PLAIN_PROTOCOLS,
} from "../../trio_cable/static/cable.js"

/** A WebSocket stand-in: records what the client sends, lets a test play
 * the server. Every instance is kept in FakeSocket.all. */
class FakeSocket {
  static all = []
  static get last() {
    return FakeSocket.all.at(-1)
  }

  constructor(url, protocols) {
    this.url = url
    this.protocols = protocols
    this.readyState = 0
    this.protocol = ""
    this.sent = []
    this.closed = false
    FakeSocket.all.push(this)
  }

  send(text) {
    assert.equal(this.readyState, 1, "sent on a socket that is not open")
    this.sent.push(JSON.parse(text))
  }

  close() {
    this.closed = true
    this.readyState = 3
  }

  // -- the server's side --
  open(protocol = "actioncable-v1-json") {
    this.readyState = 1
    this.protocol = protocol
    this.onopen?.({})
  }

  frame(data) {
    this.onmessage?.({ data: JSON.stringify(data) })
  }

  welcome() {
    this.open()
    this.frame({ type: "welcome" })
  }

  drop() {
    this.readyState = 3
    this.onclose?.({ code: 1006 })
  }

  commands(name) {
    return this.sent.filter((command) => command.command === name)
  }
}

const URL = "ws://127.0.0.1:9/cable"
const chatId = identifierFor("ChatChannel", { room: "general" })

function newCable(options = {}) {
  return createCable(URL, { WebSocket: FakeSocket, random: () => 0.5, ...options })
}

function recorder() {
  const events = []
  const callbacks = {}
  for (const name of ["connected", "disconnected", "rejected", "received"]) {
    callbacks[name] = (arg) => events.push([name, arg])
  }
  return { events, callbacks }
}

beforeEach(() => {
  FakeSocket.all = []
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 0 })
})

afterEach(() => {
  mock.timers.reset()
})

describe("identifiers and backoff", () => {
  it("puts the channel first and keeps the params' order", () => {
    assert.equal(identifierFor("Chat", { room: "a", id: 1 }), '{"channel":"Chat","room":"a","id":1}')
  })

  it("doubles from 1 s up to the 5 s cap", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, {}, () => 0.5))
    assert.deepEqual(delays, [1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000])
  })

  it("jitters within ±20 % by default", () => {
    assert.equal(backoffDelay(1, {}, () => 0), 1600)
    assert.equal(backoffDelay(1, {}, () => 1), 2400)
    assert.equal(backoffDelay(9, { reconnectMaxDelay: 5000, reconnectJitter: 0 }, () => 0.9), 5000)
  })
})

describe("frames", () => {
  it("connects with the Action Cable subprotocols and subscribes after welcome", () => {
    const cable = newCable()
    const { events, callbacks } = recorder()
    const chat = cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    const socket = FakeSocket.last
    assert.equal(socket.url, URL)
    // The extended protocol first; this server selects the plain one.
    assert.deepEqual(socket.protocols, ["actioncable-v1-ext-json", "actioncable-v1-json", "actioncable-unsupported"])
    socket.open()
    assert.deepEqual(socket.sent, [], "nothing before the welcome")
    socket.frame({ type: "welcome" })
    assert.deepEqual(socket.sent, [{ command: "subscribe", identifier: chatId }])
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    socket.frame({ identifier: chatId, message: { text: "hi" } })
    socket.frame({ type: "ping", message: 1 })
    socket.frame({ type: "error", identifier: "", reason: "unknown_action" })
    assert.deepEqual(events, [
      ["connected", { reconnected: false }],
      ["received", { text: "hi" }],
    ])
    assert.equal(chat.perform("speak", { message: "yo" }), true)
    assert.equal(chat.send({ message: "plain" }), true)
    chat.unsubscribe()
    assert.deepEqual(socket.sent.slice(1), [
      { command: "message", identifier: chatId, data: '{"message":"yo","action":"speak"}' },
      { command: "message", identifier: chatId, data: '{"message":"plain"}' },
      { command: "unsubscribe", identifier: chatId },
    ])
    assert.equal(chat.perform("speak"), false, "an unsubscribed subscription sends nothing")
  })

  it("takes two arguments as channel and callbacks", () => {
    const cable = newCable()
    const inbox = cable.subscribe("InboxChannel", { received() {} })
    assert.equal(inbox.identifier, '{"channel":"InboxChannel"}')
    assert.deepEqual(inbox.params, {})
  })

  it("routes by identifier and shares one subscribe per identifier", () => {
    const cable = newCable()
    const a = recorder()
    const b = recorder()
    const r = recorder()
    const general1 = cable.subscribe("ChatChannel", { room: "general" }, a.callbacks)
    cable.subscribe("ChatChannel", { room: "random" }, r.callbacks)
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    cable.subscribe("ChatChannel", { room: "general" }, b.callbacks)
    assert.equal(socket.commands("subscribe").length, 2, "one per identifier")
    assert.deepEqual(b.events, [["connected", { reconnected: false }]], "already confirmed")
    socket.frame({ identifier: chatId, message: 1 })
    assert.deepEqual(a.events.at(-1), ["received", 1])
    assert.deepEqual(b.events.at(-1), ["received", 1])
    assert.deepEqual(r.events, [], "the other room hears nothing")
    general1.unsubscribe()
    assert.equal(socket.commands("unsubscribe").length, 0, "one is still subscribed")
    assert.equal(FakeSocket.all.length, 1, "one socket for everything")
  })

  it("calls rejected and forgets the subscription", () => {
    const cable = newCable()
    const { events, callbacks } = recorder()
    const sub = cable.subscribe("Secret", callbacks)
    FakeSocket.last.welcome()
    FakeSocket.last.frame({ type: "reject_subscription", identifier: sub.identifier })
    assert.deepEqual(events, [["rejected", undefined]])
    assert.deepEqual(cable.subscriptions, [])
  })

  it("re-sends an unanswered subscribe every 500 ms", () => {
    const cable = newCable()
    cable.subscribe("ChatChannel", { room: "general" }, {})
    const socket = FakeSocket.last
    socket.welcome()
    mock.timers.tick(1000)
    assert.equal(socket.commands("subscribe").length, 3)
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    mock.timers.tick(2000)
    assert.equal(socket.commands("subscribe").length, 3)
  })

  it("keeps going when a callback throws", () => {
    const errors = []
    const cable = newCable({ onError: (e) => errors.push(e.message) })
    const seen = []
    cable.subscribe("A", { received() { throw new Error("boom") } })
    cable.subscribe("A", { received: (data) => seen.push(data) })
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ identifier: identifierFor("A"), message: 7 })
    assert.deepEqual(errors, ["boom"])
    assert.deepEqual(seen, [7])
  })

  it("gives up when the server selects no subprotocol", () => {
    const cable = newCable()
    cable.connect()
    FakeSocket.last.open("")
    assert.equal(cable.state, "closed")
    mock.timers.tick(60000)
    assert.equal(FakeSocket.all.length, 1)
  })
})

describe("reconnecting", () => {
  it("backs off 1 s, 2 s, 4 s while the server is away, then resubscribes", () => {
    const cable = newCable()
    const { events, callbacks } = recorder()
    cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    FakeSocket.last.welcome()
    FakeSocket.last.frame({ type: "confirm_subscription", identifier: chatId })
    FakeSocket.last.drop()
    assert.deepEqual(events.at(-1), ["disconnected", { willAttemptReconnect: true, reason: "closed" }])
    assert.equal(cable.state, "waiting")
    const opens = []
    for (const delay of [1000, 2000, 4000]) {
      mock.timers.tick(delay - 1)
      assert.equal(FakeSocket.all.length, opens.length + 1, "not yet")
      mock.timers.tick(1)
      opens.push(FakeSocket.all.length)
      FakeSocket.last.drop() // refused
    }
    assert.deepEqual(opens, [2, 3, 4])
    mock.timers.tick(8000)
    const socket = FakeSocket.last
    socket.welcome()
    assert.deepEqual(socket.commands("subscribe"), [{ command: "subscribe", identifier: chatId }])
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    assert.deepEqual(events.at(-1), ["connected", { reconnected: true }])
    // A successful welcome resets the schedule.
    socket.drop()
    mock.timers.tick(1000)
    assert.equal(FakeSocket.all.length, 6)
  })

  it("says when it retries, and never gives up by default", () => {
    const cable = newCable()
    const states = []
    cable.addEventListener("statechange", ({ detail }) => states.push(detail))
    cable.connect()
    FakeSocket.last.drop()
    assert.deepEqual(states.at(-1), { state: "waiting", reason: "closed", retryIn: 1000 })
    assert.equal(cable.retryAt, Date.now() + 1000)
    // A server away for a minute: every attempt fails, the wait stays 5 s.
    const waits = []
    for (let n = 0; n < 12; n += 1) {
      const wait = cable.retryAt - Date.now()
      waits.push(wait)
      mock.timers.tick(wait)
      FakeSocket.last.drop()
    }
    assert.deepEqual(waits, [1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000])
    assert.equal(cable.state, "waiting")
    mock.timers.tick(cable.retryAt - Date.now())
    FakeSocket.last.welcome()
    assert.equal(cable.state, "open")
    assert.equal(cable.retryAt, null)
  })

  it("stops after the configured number of attempts", () => {
    const cable = newCable({ reconnectAttempts: 2 })
    cable.connect()
    FakeSocket.last.drop()
    mock.timers.tick(1000)
    FakeSocket.last.drop()
    mock.timers.tick(2000)
    FakeSocket.last.drop()
    assert.equal(cable.state, "failed")
    mock.timers.tick(120000)
    assert.equal(FakeSocket.all.length, 3)
  })

  it("honours disconnect frames", () => {
    const cable = newCable()
    const { events, callbacks } = recorder()
    cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    FakeSocket.last.welcome()
    FakeSocket.last.frame({ type: "confirm_subscription", identifier: chatId })
    FakeSocket.last.frame({ type: "disconnect", reason: "server_restart", reconnect: true })
    assert.equal(FakeSocket.all[0].closed, true)
    mock.timers.tick(1000)
    assert.equal(FakeSocket.all.length, 2, "reconnects")
    FakeSocket.last.welcome()
    FakeSocket.last.frame({ type: "confirm_subscription", identifier: chatId })
    FakeSocket.last.frame({ type: "disconnect", reason: "unauthorized", reconnect: false })
    assert.deepEqual(events.at(-1), ["disconnected", { willAttemptReconnect: false, reason: "unauthorized" }])
    assert.equal(cable.state, "closed")
    mock.timers.tick(120000)
    assert.equal(FakeSocket.all.length, 2, "no reconnect")
  })

  it("disconnect() closes and stops reconnecting; connect() resubscribes", () => {
    const cable = newCable()
    cable.subscribe("ChatChannel", { room: "general" }, {})
    FakeSocket.last.welcome()
    cable.disconnect()
    assert.equal(FakeSocket.last.closed, true)
    mock.timers.tick(120000)
    assert.equal(FakeSocket.all.length, 1)
    cable.connect()
    FakeSocket.last.welcome()
    assert.deepEqual(FakeSocket.last.commands("subscribe"), [{ command: "subscribe", identifier: chatId }])
  })

  it("detects a dead connection from missing pings", () => {
    const cable = newCable()
    const { events, callbacks } = recorder()
    cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    for (let i = 0; i < 5; i++) {
      mock.timers.tick(3000)
      socket.frame({ type: "ping", message: i })
    }
    assert.equal(FakeSocket.all.length, 1, "pings keep it alive")
    mock.timers.tick(DEFAULTS.staleThreshold)
    assert.equal(socket.closed, true, "the silent socket is closed")
    assert.equal(FakeSocket.all.length, 2, "and a new one opened at once")
    assert.deepEqual(events.at(-1), ["disconnected", { willAttemptReconnect: true, reason: "stale" }])
    FakeSocket.last.welcome()
    assert.equal(FakeSocket.last.commands("subscribe").length, 1)
  })

  it("reconnects at once when the tab becomes visible or the browser is online", () => {
    const listeners = {}
    const documentLike = {
      visibilityState: "hidden",
      addEventListener: (name, fn) => (listeners[name] = fn),
      removeEventListener: () => {},
    }
    globalThis.document = documentLike
    const addEventListener = globalThis.addEventListener
    globalThis.addEventListener = (name, fn) => (listeners[name] = fn)
    try {
      const cable = newCable()
      cable.connect()
      FakeSocket.last.welcome()
      FakeSocket.last.drop()
      assert.equal(FakeSocket.all.length, 1)
      documentLike.visibilityState = "visible"
      listeners.visibilitychange()
      assert.equal(FakeSocket.all.length, 2, "visible: retried without waiting")
      FakeSocket.last.drop()
      listeners.online()
      assert.equal(FakeSocket.all.length, 3, "online: retried without waiting")
      FakeSocket.last.welcome()
      listeners.visibilitychange()
      assert.equal(FakeSocket.all.length, 3, "a live connection is left alone")
      mock.timers.tick(DEFAULTS.staleThreshold - 1)
      cable._stopTimers() // the tab slept: its timers did not fire
      mock.timers.tick(10)
      listeners.visibilitychange()
      assert.equal(FakeSocket.all.length, 4, "a stale one is replaced on wake")
    } finally {
      delete globalThis.document
      globalThis.addEventListener = addEventListener
    }
  })
})

describe("several cables", () => {
  it("keeps each cable's socket and subscriptions apart", () => {
    const one = newCable()
    const two = createCable("ws://127.0.0.1:10/cable", { WebSocket: FakeSocket })
    assert.ok(one instanceof Cable && two instanceof Cable)
    one.subscribe("A", {})
    two.subscribe("B", {})
    assert.deepEqual(
      FakeSocket.all.map((s) => s.url),
      [URL, "ws://127.0.0.1:10/cable"],
    )
  })

  it("turns http URLs and functions into WebSocket URLs", () => {
    createCable("http://127.0.0.1:11/cable", { WebSocket: FakeSocket }).connect()
    assert.equal(FakeSocket.last.url, "ws://127.0.0.1:11/cable")
    createCable(() => "https://example.test/cable?token=t", { WebSocket: FakeSocket }).connect()
    assert.equal(FakeSocket.last.url, "wss://example.test/cable?token=t")
  })
})

describe("calls", () => {
  function confirmedChat(callbacks = {}) {
    const cable = newCable()
    const chat = cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    return { cable, chat, socket }
  }

  it("sends a ref and resolves with the tagged reply, after the frames before it", async () => {
    const { events, callbacks } = recorder()
    const { chat, socket } = confirmedChat(callbacks)
    const result = chat.call("add", { a: 1 })
    const sent = socket.commands("message").at(-1)
    assert.deepEqual(sent, { command: "message", identifier: chatId, data: '{"a":1,"action":"add"}', ref: 1 })
    socket.frame({ identifier: chatId, message: { progress: 1 } })
    socket.frame({ identifier: chatId, type: "reply", ref: 1, result: { sum: 2 } })
    assert.deepEqual(await result, { sum: 2 })
    // the reply reached no callback; the transmit before it did
    assert.deepEqual(events.slice(1), [["received", { progress: 1 }]])
    assert.equal(chat.perform("speak"), true)
    assert.equal(socket.commands("message").at(-1).ref, undefined, "perform asks for no reply")
  })

  it("rejects with the server's reason, and ignores replies to others", async () => {
    const { chat, socket } = confirmedChat()
    const first = chat.call("save")
    const second = chat.call("save")
    socket.frame({ identifier: "{}", type: "reply", ref: 1, result: "not ours" })
    socket.frame({ identifier: chatId, type: "reply", ref: 2, error: { reason: "invalid", message: "too long" } })
    socket.frame({ identifier: chatId, type: "reply", ref: 1, result: "ok" })
    assert.equal(await first, "ok")
    await assert.rejects(second, (error) => {
      assert.ok(error instanceof CallError)
      assert.equal(error.reason, "invalid")
      assert.equal(error.action, "save")
      assert.match(error.message, /too long/)
      return true
    })
  })

  it("waits for the confirmation, then sends", async () => {
    const cable = newCable()
    const chat = cable.subscribe("ChatChannel", { room: "general" })
    const result = chat.call("add")
    const socket = FakeSocket.last
    socket.welcome()
    assert.deepEqual(socket.commands("message"), [], "not before the confirmation")
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    assert.equal(socket.commands("message").length, 1)
    socket.frame({ identifier: chatId, type: "reply", ref: 1, result: 3 })
    assert.equal(await result, 3)
  })

  it("times out with a clear error", async () => {
    const { chat } = confirmedChat()
    const result = chat.call("slow", {}, { timeout: 500 })
    mock.timers.tick(499)
    let settled = false
    result.catch(() => {}).finally(() => (settled = true))
    await Promise.resolve()
    assert.equal(settled, false)
    mock.timers.tick(1)
    await assert.rejects(result, { name: "CallError", reason: "timeout" })
  })

  it("ends pending calls with their subscription and their connection", async () => {
    const { cable, chat, socket } = confirmedChat()
    const lost = chat.call("slow")
    socket.drop()
    await assert.rejects(lost, { reason: "connection_lost" })
    const notSent = chat.call("later") // not connected: waits, then is sent
    mock.timers.tick(1000)
    FakeSocket.last.welcome()
    FakeSocket.last.frame({ type: "confirm_subscription", identifier: chatId })
    assert.equal(FakeSocket.last.commands("message").length, 1)
    const left = chat.call("slow")
    chat.unsubscribe()
    await assert.rejects(notSent, { reason: "unsubscribed" })
    await assert.rejects(left, { reason: "unsubscribed" })
    await assert.rejects(chat.call("again"), { reason: "unsubscribed" })
    const rejected = cable.subscribe("ChatChannel", { room: "secret" })
    const call = rejected.call("x")
    FakeSocket.last.frame({ type: "reject_subscription", identifier: rejected.identifier })
    await assert.rejects(call, { reason: "rejected" })
    assert.equal(cable._calls.size, 0, "no call left waiting")
  })
})

describe("the extended protocol (actioncable-v1-ext-json)", () => {
  const EPOCH = "e1"
  const at = (offset, n) => ({ identifier: chatId, message: { n }, stream_id: "chat", epoch: EPOCH, offset })

  function extCable(options = {}) {
    const cable = newCable(options)
    const { events, callbacks } = recorder()
    for (const name of ["recovered", "historyLost"]) callbacks[name] = () => events.push([name])
    const chat = cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    const socket = FakeSocket.last
    socket.open(EXT_PROTOCOL)
    mock.timers.tick(2000) // the client's clock at the welcome: 2 s
    socket.frame({ type: "welcome", sid: "s1" })
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    return { cable, chat, socket, events }
  }

  it("falls back to actioncable-v1-json: no sid, no history, no pong, no whisper", () => {
    const cable = newCable()
    const { callbacks } = recorder()
    const chat = cable.subscribe("ChatChannel", { room: "general" }, callbacks)
    const socket = FakeSocket.last
    socket.open("actioncable-v1-json")
    socket.frame({ type: "welcome", sid: "ignored" })
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    socket.frame(at(1, 1))
    socket.frame({ type: "ping", message: 5 })
    assert.equal(cable.extended, false)
    assert.equal(cable.sessionId, null)
    assert.equal(chat.whisper({ typing: true }), false)
    socket.drop()
    mock.timers.tick(1000)
    assert.equal(FakeSocket.last.url, URL, "no sid to resume")
    FakeSocket.last.welcome()
    assert.deepEqual(FakeSocket.last.sent, [{ command: "subscribe", identifier: chatId }])
    assert.deepEqual(socket.commands("pong"), [])
  })

  it("offers only actioncable-v1-json with extended: false", () => {
    newCable({ extended: false }).connect()
    assert.deepEqual(FakeSocket.last.protocols, PLAIN_PROTOCOLS)
  })

  it("answers pings with pong and whispers", () => {
    const { cable, chat, socket } = extCable()
    assert.equal(cable.extended, true)
    assert.equal(cable.sessionId, "s1")
    socket.frame({ type: "ping", message: 1700000000 })
    assert.deepEqual(socket.commands("pong"), [{ command: "pong" }])
    assert.equal(chat.whisper({ typing: true }), true)
    assert.deepEqual(socket.commands("whisper"), [{ command: "whisper", identifier: chatId, data: { typing: true } }])
  })

  it("resumes its session: no subscribe, history from its positions, recovered()", () => {
    const { cable, socket, events } = extCable()
    const sessions = []
    cable.addEventListener("connected", (event) => sessions.push(event.detail))
    socket.frame(at(1, 1))
    socket.frame(at(2, 2))
    socket.frame({ type: "ping", message: 1700000000 })
    socket.drop()
    mock.timers.tick(1000)
    const again = FakeSocket.last
    assert.equal(again.url, `${URL}?sid=s1`)
    again.open(EXT_PROTOCOL)
    again.frame({ type: "welcome", sid: "s2", restored: true, restored_ids: [chatId] })
    assert.deepEqual(again.sent, [
      {
        command: "history",
        identifier: chatId,
        history: { since: 1700000000, streams: { chat: { epoch: EPOCH, offset: 2 } } },
      },
    ])
    again.frame(at(2, 2)) // seen: dropped
    again.frame(at(3, 3))
    again.frame({ type: "confirm_history", identifier: chatId })
    mock.timers.tick(600)
    assert.deepEqual(again.commands("subscribe"), [], "a restored subscription is not subscribed again")
    assert.deepEqual(events, [
      ["connected", { reconnected: false }],
      ["received", { n: 1 }],
      ["received", { n: 2 }],
      ["disconnected", { willAttemptReconnect: true, reason: "closed" }],
      ["connected", { reconnected: true, restored: true }],
      ["received", { n: 3 }],
      ["recovered"],
    ])
    assert.deepEqual(sessions, [{ reconnected: true, restored: true }])
    again.drop()
    mock.timers.tick(1000)
    assert.equal(FakeSocket.last.url, `${URL}?sid=s2`, "the new session's id")
  })

  it("unsubscribes what it left while away from a restored session", () => {
    const { chat, socket } = extCable()
    socket.drop()
    chat.unsubscribe()
    mock.timers.tick(1000)
    const again = FakeSocket.last
    again.open(EXT_PROTOCOL)
    again.frame({ type: "welcome", sid: "s2", restored: true, restored_ids: [chatId] })
    assert.deepEqual(again.sent, [{ command: "unsubscribe", identifier: chatId }])
  })

  it("ends the session on disconnect(): unsubscribed on the wire, sid forgotten", () => {
    const { cable, socket, events } = extCable()
    cable.disconnect()
    assert.deepEqual(socket.commands("unsubscribe"), [{ command: "unsubscribe", identifier: chatId }])
    assert.equal(cable.sessionId, null)
    cable.connect()
    assert.equal(FakeSocket.last.url, URL, "nothing to resume")
    FakeSocket.last.open(EXT_PROTOCOL)
    FakeSocket.last.frame({ type: "welcome", sid: "s3" })
    assert.equal(FakeSocket.last.commands("subscribe").length, 1, "kept here: subscribed again")
    assert.deepEqual(events.at(-1), ["disconnected", { willAttemptReconnect: false, reason: "client" }])
  })

  it("ends the session when the page goes away (pagehide)", () => {
    const listeners = {}
    const addEventListener = globalThis.addEventListener
    const removeEventListener = globalThis.removeEventListener
    globalThis.addEventListener = (name, fn) => (listeners[name] = fn)
    globalThis.removeEventListener = () => {}
    try {
      const { cable, socket } = extCable()
      listeners.pagehide()
      assert.deepEqual(socket.commands("unsubscribe"), [{ command: "unsubscribe", identifier: chatId }])
      assert.equal(socket.closed, true)
      assert.equal(cable.sessionId, null)
      mock.timers.tick(1000) // back from the back-forward cache: subscribes
      assert.equal(FakeSocket.last.url, URL)
      FakeSocket.last.open(EXT_PROTOCOL)
      FakeSocket.last.frame({ type: "welcome", sid: "s4" })
      assert.equal(FakeSocket.last.commands("subscribe").length, 1)
    } finally {
      globalThis.addEventListener = addEventListener
      globalThis.removeEventListener = removeEventListener
    }
  })

  it("subscribes with history when not restored, and reports history lost", () => {
    const { socket, events } = extCable()
    socket.frame(at(7, 7))
    socket.drop()
    mock.timers.tick(1000)
    const again = FakeSocket.last
    again.open(EXT_PROTOCOL)
    again.frame({ type: "welcome", sid: "s9" }) // the session expired
    const subscribe = {
      command: "subscribe",
      identifier: chatId,
      // no ping yet: since the first welcome, by the client's clock
      history: { since: 2, streams: { chat: { epoch: EPOCH, offset: 7 } } },
    }
    assert.deepEqual(again.sent, [subscribe])
    mock.timers.tick(500)
    assert.deepEqual(again.sent, [subscribe, subscribe], "re-sent as it was")
    again.frame({ type: "confirm_subscription", identifier: chatId })
    again.frame({ type: "reject_history", identifier: chatId })
    again.frame({ ...at(1, 100), epoch: "e2" }) // a new epoch counts afresh
    assert.deepEqual(events.slice(-3), [["connected", { reconnected: true }], ["historyLost"], ["received", { n: 100 }]])
  })
})

describe("presence", () => {
  function joinedCable() {
    const cable = newCable().connect()
    const seen = []
    const sub = cable.subscribe("ChatChannel", { room: "general" }, {
      received: (data) => seen.push(["received", data]),
      joined: (id, info) => seen.push(["joined", id, info]),
      left: (id) => seen.push(["left", id]),
    })
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    return { cable, sub, socket, seen }
  }

  it("sends AnyCable's join, leave and presence commands", () => {
    const { sub, socket } = joinedCable()
    assert.equal(sub.presence.join(7, { name: "Ann" }), true)
    sub.presence.leave()
    assert.deepEqual(socket.commands("join"), [
      { command: "join", identifier: chatId, presence: { id: "7", info: { name: "Ann" } } },
    ])
    assert.deepEqual(socket.commands("leave"), [{ command: "leave", identifier: chatId }])
  })

  it("takes presence messages out of received() and keeps the list", async () => {
    const { sub, socket, seen } = joinedCable()
    const onJoin = []
    sub.presence.onJoin((id, info) => onJoin.push([id, info]))
    const listed = sub.presence.info()
    assert.deepEqual(socket.commands("presence"), [{ command: "presence", identifier: chatId, data: {} }])
    const message = (presence) => socket.frame({ identifier: chatId, message: { presence } })
    message({ type: "info", total: 1, records: [{ id: "a", info: 1 }] })
    assert.deepEqual(await listed, { a: 1 })
    message({ type: "join", id: "b", info: 2 })
    message({ type: "leave", id: "a" })
    socket.frame({ identifier: chatId, message: { presence: "not an event", other: 1 } })
    assert.deepEqual(await sub.presence.info(), { b: 2 })
    assert.equal(socket.commands("presence").length, 1) // kept, not asked again
    assert.deepEqual(onJoin, [["b", 2]])
    assert.deepEqual(seen, [
      ["joined", "b", 2],
      ["left", "a"],
      ["received", { presence: "not an event", other: 1 }],
    ])
  })

  it("rejects info() where the channel tracks no presence", async () => {
    const { sub, socket } = joinedCable()
    const listed = sub.presence.info()
    socket.frame({ identifier: chatId, message: { presence: { type: "error" } } })
    await assert.rejects(listed, /not tracked/)
  })

  it("joins again after a reconnect", () => {
    const { sub, socket } = joinedCable()
    sub.presence.join("ann")
    socket.drop()
    mock.timers.tick(60_000)
    const again = FakeSocket.last
    assert.notEqual(again, socket)
    again.welcome()
    again.frame({ type: "confirm_subscription", identifier: chatId })
    assert.deepEqual(again.commands("join"), [
      { command: "join", identifier: chatId, presence: { id: "ann", info: null } },
    ])
  })
})

describe("presence frames of the extended protocol", () => {
  it("AnyCable's presence frame reaches presence, not received()", async () => {
    const cable = newCable().connect()
    const seen = []
    const sub = cable.subscribe("ChatChannel", { room: "general" }, {
      received: (data) => seen.push(["received", data]),
      joined: (id, info) => seen.push(["joined", id, info]),
    })
    const socket = FakeSocket.last
    socket.welcome()
    socket.frame({ type: "confirm_subscription", identifier: chatId })
    const listed = sub.presence.info()
    socket.frame({ type: "presence", identifier: chatId, message: { type: "info", total: 0, records: [] } })
    assert.deepEqual(await listed, {})
    socket.frame({ type: "presence", identifier: chatId, message: { type: "join", id: "a", info: 1 } })
    assert.deepEqual(seen, [["joined", "a", 1]])
    assert.deepEqual(sub.presence.members, { a: 1 })
  })
})
