// trio_cable's browser client: one WebSocket, many subscriptions, speaking
// AnyCable's extended Action Cable protocol (actioncable-v1-ext-json) where
// the server does, else the Rails one (actioncable-v1-json). With the
// extended one a dropped connection resumes its session and gets back what
// it missed on streams with history, once and in order. An ES module with
// no dependencies and no build step; types in cable.d.ts.
//
//   import { cable } from "/cable.js"
//   cable.connect()
//   const chat = cable.subscribe("ChatChannel", { room: "general" }, {
//     connected() {}, disconnected() {}, rejected() {}, received(data) {},
//   })
//   chat.perform("speak", { message: "hello" })
//   const saved = await chat.call("save", { text: "hi" }) // the action's return value
//
// It also defines <turbo-stream-channel channel="..." params='{...}'>, which
// subscribes while it is in the document and hands every Turbo Stream it
// receives to Turbo (or, without Turbo on the page, applies it itself).

export const EXT_PROTOCOL = "actioncable-v1-ext-json"
/** What an extended cable offers, best first: a server that does not speak
 * the extended protocol selects actioncable-v1-json. */
export const PROTOCOLS = [EXT_PROTOCOL, "actioncable-v1-json", "actioncable-unsupported"]
/** What a cable with `extended: false` offers (as the official client). */
export const PLAIN_PROTOCOLS = ["actioncable-v1-json", "actioncable-unsupported"]

export const DEFAULTS = Object.freeze({
  path: "/cable",
  reconnectBaseDelay: 1000, // first retry after about 1 s, then 2 s, 4 s...
  // ...capped here: a restarted server is found within about 5 s of being
  // back, as with Phoenix's and Socket.IO's clients (a 30 s cap made a page
  // wait 13 s longer than the restart took)
  reconnectMaxDelay: 5000,
  reconnectJitter: 0.2, // each delay is moved by up to ±20 %
  // Never give up, as the official client, Phoenix and Socket.IO do: with
  // the 5 s cap, 10 attempts gave up on a restart that took 45 s
  reconnectAttempts: Infinity, // (a number: then give up, state "failed")
  staleThreshold: 6000, // no frame for this long: the connection is dead
  subscribeRetryInterval: 500, // re-send unanswered subscribes (like Rails 7)
  callTimeout: 10000, // call() rejects with reason "timeout" after this long
  extended: true, // offer actioncable-v1-ext-json first (see PROTOCOLS)
  pongs: true, // extended protocol: answer every ping with a pong
})

const OPEN = 1

/** The delay before reconnect attempt `attempt` (0-based), in ms. */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const base = options.reconnectBaseDelay ?? DEFAULTS.reconnectBaseDelay
  const cap = options.reconnectMaxDelay ?? DEFAULTS.reconnectMaxDelay
  const jitter = options.reconnectJitter ?? DEFAULTS.reconnectJitter
  const nominal = Math.min(cap, base * 2 ** attempt)
  return Math.max(0, Math.round(nominal * (1 + jitter * (2 * random() - 1))))
}

/** The identifier string for a channel and its params (channel first). */
export function identifierFor(channel, params = {}) {
  return JSON.stringify({ channel, ...params })
}

/** The default URL: the page's <meta name="action-cable-url"> (as with
 * Rails), else `path` on the page's host; ws: or wss: to match the page. */
export function defaultUrl(path = DEFAULTS.path) {
  const location = globalThis.location
  if (!location) throw new Error("cable.connect(url): no page location to default to")
  const meta = globalThis.document?.head?.querySelector?.("meta[name='action-cable-url']")
  return toWebSocketUrl(meta?.getAttribute("content") || path, location.href)
}

function toWebSocketUrl(url, base) {
  const resolved = new URL(url, base ?? globalThis.location?.href)
  if (resolved.protocol === "http:") resolved.protocol = "ws:"
  if (resolved.protocol === "https:") resolved.protocol = "wss:"
  return resolved.href
}

function isCallbacks(value) {
  return (
    value != null &&
    typeof value === "object" &&
    ["connected", "disconnected", "rejected", "received", "initialized", "recovered", "historyLost"].some(
      (name) => typeof value[name] === "function",
    )
  )
}

/** Why a call() failed: `reason` is the server's (server_error,
 * unknown_action, your ActionError's...) or the client's: timeout,
 * connection_lost, rejected, unsubscribed. */
export class CallError extends Error {
  constructor(reason, message, action) {
    super(`${action}: ${reason}${message ? `: ${message}` : ""}`)
    this.name = "CallError"
    this.reason = reason
    this.action = action
  }
}

// -- presence (see docs/presence.md) -------------------------------------------

/** The presence event or member list a message carries, or null for data:
 * over actioncable-v1-json the server sends them as {"presence": {...}}. */
function presencePayload(data) {
  if (data === null || typeof data !== "object" || Array.isArray(data)) return null
  const keys = Object.keys(data)
  if (keys.length !== 1 || keys[0] !== "presence") return null
  const inner = data.presence
  return inner && typeof inner === "object" && typeof inner.type === "string" ? inner : null
}

/** `subscription.presence`: join, leave, who is here, and who comes and
 * goes (callbacks `joined(id, info)` and `left(id)`, or onJoin/onLeave).
 * The channel must track presence (stream_from(stream, presence=True)). */
export class Presence {
  constructor(subscription) {
    this.subscription = subscription
    this.members = null // {id: info} once info() answered; kept up to date
    this._joined = null
    this._waiting = []
    this._listeners = { join: new Set(), leave: new Set() }
  }

  /** Be member `id` with `info`; joined again after a reconnect. False if not sent. */
  join(id, info = null) {
    this._joined = { id: String(id), info }
    return this.subscription.cable._sendCommand(this.subscription, "join", { presence: this._joined })
  }

  /** Stop being a member. False if not sent. */
  leave() {
    this._joined = null
    return this.subscription.cable._sendCommand(this.subscription, "leave")
  }

  /** Resolve with {id: info} of every member: asked once, then kept up to
   * date from the events. Rejects when the channel tracks no presence or
   * after `timeout` ms (default options.callTimeout). */
  info({ timeout } = {}) {
    if (this.members) return Promise.resolve({ ...this.members })
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject }
      const ms = timeout ?? this.subscription.cable.options.callTimeout
      waiter.timer = setTimeout(() => this._settle(waiter, new Error("presence: no answer")), ms)
      this._waiting.push(waiter)
      if (this._waiting.length === 1) this.subscription.cable._sendCommand(this.subscription, "presence", { data: {} })
    })
  }

  /** Call fn(id, info) for each join; returns a function that stops it. */
  onJoin(fn) {
    this._listeners.join.add(fn)
    return () => this._listeners.join.delete(fn)
  }

  /** Call fn(id) for each leave; returns a function that stops it. */
  onLeave(fn) {
    this._listeners.leave.add(fn)
    return () => this._listeners.leave.delete(fn)
  }

  _settle(waiter, error) {
    clearTimeout(waiter.timer)
    const index = this._waiting.indexOf(waiter)
    if (index >= 0) this._waiting.splice(index, 1)
    if (error) waiter.reject(error)
    else waiter.resolve({ ...this.members })
  }

  _handle(event) {
    if (event.type === "info") {
      this.members = {}
      for (const record of event.records ?? []) this.members[String(record.id)] = record.info
      for (const waiter of [...this._waiting]) this._settle(waiter)
      return
    }
    if (event.type === "error") {
      for (const waiter of [...this._waiting]) this._settle(waiter, new Error("presence: not tracked here"))
      return
    }
    if (event.type !== "join" && event.type !== "leave") return
    const id = String(event.id)
    if (this.members) {
      if (event.type === "join") this.members[id] = event.info
      else delete this.members[id]
    }
    const sub = this.subscription
    if (event.type === "join") sub._call("joined", id, event.info)
    else sub._call("left", id)
    for (const fn of this._listeners[event.type]) {
      try {
        fn(id, event.info)
      } catch (error) {
        sub.cable._report(error)
      }
    }
  }

  _confirmed() {
    // A new connection: the list is asked for anew, and a member joins again.
    this.members = null
    if (this._joined) this.subscription.cable._sendCommand(this.subscription, "join", { presence: this._joined })
  }
}

/** One subscription: a channel with params, and the callbacks it feeds. */
export class Subscription {
  constructor(cable, channel, params, callbacks) {
    this.cable = cable
    this.channel = channel
    this.params = { ...params }
    this.identifier = identifierFor(channel, params)
    this.callbacks = callbacks ?? {}
    this.confirmed = false
    this.closed = false
    this._wasConfirmed = false
    /** Presence on the channel's presence stream (docs/presence.md). */
    this.presence = new Presence(this)
  }

  /** Call the server action `action` with `data`; false if not sent. */
  perform(action, data = {}) {
    return this.cable._sendMessage(this, { ...data, action })
  }

  /** Call the server action `action` and resolve with what it returned
   * (trio_cable servers). Waits to be connected and confirmed; rejects
   * with a CallError (see its reasons) after `timeout` ms at the latest.
   * Frames the action transmitted reach `received` before it resolves. */
  call(action, data = {}, { timeout } = {}) {
    return this.cable._callAction(this, { ...data, action }, timeout ?? this.cable.options.callTimeout)
  }

  /** Send `data` to the channel's default action (`receive`). */
  send(data) {
    return this.cable._sendMessage(this, data)
  }

  /** Whisper `data` (any JSON) to the other subscribers of the stream the
   * channel opened for whispers (extended protocol only); false if not
   * sent (not confirmed, or the server speaks only actioncable-v1-json). */
  whisper(data) {
    return this.cable._whisper(this, data)
  }

  /** Leave the channel; the server is told once no subscription to the
   * same channel and params is left on this cable. */
  unsubscribe() {
    this.cable._remove(this)
  }

  _call(name, ...args) {
    const callback = this.callbacks[name]
    if (typeof callback !== "function") return undefined
    try {
      return callback.apply(this, args)
    } catch (error) {
      // One broken callback must not stop the others or the connection.
      this.cable._report(error)
      return undefined
    }
  }
}

/**
 * A cable: one WebSocket (opened by connect()), its subscriptions, and the
 * reconnection policy. Events: "statechange" (detail: {state, reason}).
 */
export class Cable extends EventTarget {
  constructor(url, options = {}) {
    super()
    this.url = url
    this.options = { ...DEFAULTS, ...options }
    // idle: never connected; connecting; open; waiting: to reconnect;
    // failed: gave up after reconnectAttempts (a visible tab or the browser
    // coming online retries); closed: disconnect() or a disconnect frame with
    // reconnect false (only connect() reopens).
    this.state = "idle"
    this.attempts = 0
    this.retryAt = null // while waiting: when the next attempt is due (ms)
    this.socket = null
    this.lastFrameAt = 0
    this._subscriptions = new Map() // identifier -> Set<Subscription>
    this._pending = new Set() // identifiers subscribed but not answered
    this._calls = new Map() // ref -> a call() waiting for its reply
    this._nextRef = 0
    this._welcomed = false
    this._everOpened = false
    // The extended protocol (actioncable-v1-ext-json): whether this socket
    // speaks it, the session id to resume, the server's time of its last
    // ping (history since then for streams with no position yet), and per
    // identifier confirmed once the last position seen of each stream.
    this.extended = false
    this.sessionId = null
    this._since = null
    this._positions = new Map() // identifier -> Map<stream, {epoch, offset}>
    this._reconnectTimer = null
    this._staleTimer = null
    this._retryTimer = null
    this._listening = false
  }

  // -- public API --------------------------------------------------------------

  /** Open the connection (and keep it open) at `url`, or the cable's URL,
   * or /cable on the page's host. */
  connect(url) {
    if (url !== undefined) this.url = url
    if (this.state === "connecting" || this.state === "open") return this
    this._listen()
    this.attempts = 0
    this._open()
    return this
  }

  /** Close the connection and stop reconnecting. Subscriptions are kept:
   * connect() again subscribes them again. */
  disconnect() {
    this._clearReconnect()
    this._unlisten()
    const wasOpen = this._welcomed
    if (wasOpen) this._endSession()
    this._closeSocket()
    this._setState("closed", "client")
    if (wasOpen) this._notifyDisconnected({ willAttemptReconnect: false, reason: "client" })
    return this
  }

  /** Subscribe: subscribe(channel, params, callbacks) or
   * subscribe(channel, callbacks). Connects the cable if it never was. */
  subscribe(channel, params, callbacks) {
    if (callbacks === undefined && isCallbacks(params)) [params, callbacks] = [{}, params]
    if (typeof channel !== "string" || !channel) throw new TypeError("channel must be a name")
    const subscription = new Subscription(this, channel, params ?? {}, callbacks)
    const key = subscription.identifier
    let group = this._subscriptions.get(key)
    const first = group === undefined
    if (first) this._subscriptions.set(key, (group = new Set()))
    group.add(subscription)
    subscription._call("initialized")
    if (first) this._sendSubscribe(key)
    else if (this._isConfirmed(group, subscription)) {
      subscription.confirmed = true
      subscription._call("connected", { reconnected: false })
    }
    if (this.state === "idle") this.connect()
    return subscription
  }

  /** Every current subscription (a copy). */
  get subscriptions() {
    return [...this._subscriptions.values()].flatMap((group) => [...group])
  }

  get isConnected() {
    return this.state === "open" && this._welcomed
  }

  // -- the socket ---------------------------------------------------------------

  _resolveUrl() {
    const url = typeof this.url === "function" ? this.url() : this.url
    return url === undefined || url === null
      ? defaultUrl(this.options.path)
      : toWebSocketUrl(url, globalThis.location?.href)
  }

  _open() {
    this._closeSocket()
    this._setState("connecting")
    const WebSocketClass = this.options.WebSocket ?? globalThis.WebSocket
    let socket
    try {
      const offered = this.options.extended ? PROTOCOLS : PLAIN_PROTOCOLS
      socket = new WebSocketClass(this._socketUrl(), offered)
    } catch (error) {
      this._report(error)
      this._scheduleReconnect("error")
      return
    }
    this.socket = socket
    socket.onopen = () => this._onOpen(socket)
    socket.onmessage = (event) => this._onMessage(socket, event)
    socket.onclose = () => this._onClose(socket)
    socket.onerror = () => {} // a close event follows
  }

  _onOpen(socket) {
    if (socket !== this.socket) return
    // A server that picked no subprotocol does not speak ours: the official
    // client gives up for good here too, rather than retrying forever.
    if (socket.protocol === "actioncable-unsupported" || socket.protocol === "") {
      this._giveUp("unsupported")
      return
    }
    this.extended = socket.protocol === EXT_PROTOCOL
    this._setState("open")
    this._touch()
  }

  _onMessage(socket, event) {
    if (socket !== this.socket) return
    this._touch()
    let frame
    try {
      frame = JSON.parse(event.data)
    } catch (error) {
      this._report(error)
      return
    }
    if (frame === null || typeof frame !== "object") return
    this._handleFrame(frame)
  }

  _handleFrame(frame) {
    const { type, identifier } = frame
    switch (type) {
      case "welcome":
        return this._onWelcome(frame)
      case "ping":
        return this._onPing(frame)
      case "disconnect":
        return this._onDisconnectFrame(frame)
      case "confirm_subscription":
        return this._onConfirm(identifier)
      case "reject_subscription":
        return this._onReject(identifier)
      case "reply":
        // Only ever sent for our own call()s: never a `received` callback.
        return this._onReply(frame)
      case "confirm_history":
        return this._onHistory(identifier, "recovered")
      case "reject_history":
        return this._onHistory(identifier, "historyLost")
      case "presence":
        // AnyCable's presence frame (the extended protocol); over
        // actioncable-v1-json the same events come as {"presence": ...} messages.
        for (const subscription of this._group(identifier)) {
          if (frame.message && typeof frame.message.type === "string") subscription.presence._handle(frame.message)
        }
        return undefined
      default:
        // Data frames have no type; frames of unknown types that name a
        // subscription go to it too (protocol extensions). Error frames
        // carry an empty identifier and so reach nobody.
        if (typeof identifier === "string" && identifier) {
          if (!this._isNew(identifier, frame)) return undefined // a replay's overlap
          const data = "message" in frame ? frame.message : frame
          const presence = presencePayload(data)
          for (const subscription of this._group(identifier)) {
            if (presence) subscription.presence._handle(presence)
            else subscription._call("received", data)
          }
        }
        return undefined
    }
  }

  _onWelcome(frame) {
    this._welcomed = true
    const reconnected = this._everOpened
    this._everOpened = true
    this.attempts = 0
    const restored = this._onSession(frame)
    this._setState("open")
    const resumed = this.extended && frame.restored === true // the session, even with no subscription
    this.dispatchEvent(new CustomEvent("connected", { detail: { reconnected, restored: resumed } }))
    for (const identifier of this._subscriptions.keys()) {
      if (!restored.has(identifier)) this._sendSubscribe(identifier)
    }
  }

  _onDisconnectFrame(frame) {
    const reason = frame.reason ?? "remote"
    if (frame.reconnect === false) {
      this._giveUp(reason)
      return
    }
    this._lost(reason)
  }

  _onConfirm(identifier) {
    this._pending.delete(identifier)
    if (!this._positions.has(identifier)) this._positions.set(identifier, new Map())
    for (const subscription of this._group(identifier)) {
      if (subscription.confirmed) continue
      subscription.confirmed = true
      subscription._call("connected", { reconnected: subscription._wasConfirmed === true })
      subscription._wasConfirmed = true
      subscription.presence._confirmed()
    }
    this._sendWaitingCalls(identifier)
  }

  _sendWaitingCalls(identifier) {
    for (const [ref, call] of this._calls) {
      if (!call.sent && call.subscription.identifier === identifier) this._sendCall(ref, call)
    }
  }

  _onReply(frame) {
    const call = this._calls.get(frame.ref)
    if (!call || call.subscription.identifier !== frame.identifier) return
    const error = frame.error
    if (error && typeof error === "object") {
      this._settle(frame.ref, new CallError(String(error.reason), String(error.message ?? ""), call.action))
    } else {
      this._settle(frame.ref, undefined, frame.result)
    }
  }

  _onReject(identifier) {
    this._pending.delete(identifier)
    this._positions.delete(identifier)
    const group = this._group(identifier)
    this._subscriptions.delete(identifier)
    for (const subscription of group) {
      subscription.closed = true
      subscription._call("rejected")
      this._failCalls("rejected", "the subscription was rejected", subscription)
    }
  }

  _onClose(socket) {
    if (socket !== this.socket) return
    this.socket = null
    this._lost("closed")
  }

  /** The connection is gone but should come back. */
  _lost(reason) {
    const wasWelcomed = this._welcomed
    this._closeSocket()
    if (this.state === "closed" || this.state === "failed") return
    this._scheduleReconnect(reason)
    if (wasWelcomed) this._notifyDisconnected({ willAttemptReconnect: this.state === "waiting", reason })
  }

  /** The connection is gone for good (until connect() is called again). */
  _giveUp(reason) {
    const wasWelcomed = this._welcomed
    this._clearReconnect()
    this._closeSocket()
    this._setState("closed", reason)
    if (wasWelcomed) this._notifyDisconnected({ willAttemptReconnect: false, reason })
  }

  _notifyDisconnected(detail) {
    this.dispatchEvent(new CustomEvent("disconnected", { detail }))
    for (const subscription of this.subscriptions) {
      if (!subscription.confirmed) continue
      subscription.confirmed = false
      subscription._call("disconnected", detail)
    }
  }

  _closeSocket() {
    this._welcomed = false
    this._pending.clear()
    // A reply never crosses connections; calls not sent yet keep waiting.
    this._failCalls("connection_lost", "the connection closed before the reply", null, true)
    this._stopTimers()
    const socket = this.socket
    this.socket = null
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null
      try {
        socket.close()
      } catch {
        // already closing
      }
    }
  }

  // -- the extended protocol (actioncable-v1-ext-json) ------------------------

  /** The socket's URL: with the session id to resume, if there is one. */
  _socketUrl() {
    const url = this._resolveUrl()
    if (!this.options.extended || !this.sessionId) return url
    const withSid = new URL(url)
    withSid.searchParams.set("sid", this.sessionId)
    return withSid.href
  }

  /** The welcome's session: remember its id; for a restored one, confirm
   * its subscriptions again (no subscribe: subscribed() does not run
   * again) and ask for what each missed. The identifiers restored. */
  _onSession(frame) {
    const restored = new Set()
    if (!this.extended) {
      this.sessionId = null
      return restored
    }
    this.sessionId = typeof frame.sid === "string" && frame.sid ? frame.sid : null
    if (this._since === null) this._since = Math.floor(Date.now() / 1000)
    if (frame.restored !== true) return restored
    const named = Array.isArray(frame.restored_ids) ? frame.restored_ids : [...this._subscriptions.keys()]
    for (const identifier of named) {
      if (!this._subscriptions.has(identifier)) {
        this._send({ command: "unsubscribe", identifier }) // left while away
        continue
      }
      restored.add(identifier)
      if (!this._positions.has(identifier)) this._positions.set(identifier, new Map()) // its confirm was lost
      this._send({ command: "history", identifier, history: this._historyRequest(identifier) })
      for (const subscription of this._group(identifier)) {
        if (subscription.confirmed) continue
        subscription.confirmed = true
        subscription._call("connected", { reconnected: true, restored: true })
        subscription._wasConfirmed = true
      }
      this._sendWaitingCalls(identifier)
    }
    return restored
  }

  /** End the server's session, so that it runs unsubscribed() now rather
   * than keep the subscriptions for a resume that will not come: every
   * subscription is unsubscribed on the wire (not here: connect() again
   * subscribes them again) and the session id forgotten. */
  _endSession() {
    if (this.extended) {
      for (const identifier of this._subscriptions.keys()) this._send({ command: "unsubscribe", identifier })
    }
    this.sessionId = null
  }

  /** The page is going away (a reload or a navigation starts a new cable,
   * which cannot resume this session): end it. If the page comes back
   * from the back-forward cache, the cable reconnects and subscribes. */
  _pageHidden() {
    if (!this._welcomed || !this.extended) return // plain: no session to end
    this._endSession()
    this._lost("pagehide")
  }

  _onPing(frame) {
    if (!this.extended) return
    if (typeof frame.message === "number") this._since = Math.floor(frame.message)
    if (this.options.pongs) this._send({ command: "pong" })
  }

  _onHistory(identifier, callback) {
    for (const subscription of this._group(identifier)) subscription._call(callback)
  }

  /** What `identifier` asks for after a reconnect: from the last position
   * seen of each stream, and since the server's last ping for the rest. */
  _historyRequest(identifier) {
    const streams = {}
    for (const [stream, position] of this._positions.get(identifier) ?? []) streams[stream] = position
    return this._since === null ? { streams } : { since: this._since, streams }
  }

  /** Record a data frame's position; false if it was received before. */
  _isNew(identifier, frame) {
    const { stream_id: stream, epoch, offset } = frame
    const positions = this._positions.get(identifier)
    if (!positions || typeof stream !== "string" || typeof epoch !== "string" || !Number.isInteger(offset)) {
      return true
    }
    const seen = positions.get(stream)
    if (seen && seen.epoch === epoch && offset <= seen.offset) return false
    positions.set(stream, { epoch, offset })
    return true
  }

  _whisper(subscription, data) {
    if (subscription.closed || !subscription.confirmed || !this._welcomed || !this.extended) return false
    return this._send({ command: "whisper", identifier: subscription.identifier, data })
  }

  // -- reconnecting -----------------------------------------------------------

  _scheduleReconnect(reason) {
    this._clearReconnect()
    if (this.attempts >= this.options.reconnectAttempts) {
      this._setState("failed", reason)
      return
    }
    const random = this.options.random ?? Math.random
    const delay = backoffDelay(this.attempts, this.options, random)
    this.attempts += 1
    this.retryAt = Date.now() + delay
    this._setState("waiting", reason, { retryIn: delay })
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null
      this._open()
    }, delay)
  }

  _clearReconnect() {
    if (this._reconnectTimer !== null) clearTimeout(this._reconnectTimer)
    this._reconnectTimer = null
  }

  /** Reconnect now (a tab became visible, the browser came back online). */
  _reconnectNow(reason) {
    if (this.state === "open" && this._isStale()) this._lost(reason)
    if (this.state === "waiting" || this.state === "failed") {
      this._clearReconnect()
      this.attempts = 0
      this._open()
    }
  }

  _isStale() {
    return Date.now() - this.lastFrameAt >= this.options.staleThreshold
  }

  _touch() {
    this.lastFrameAt = Date.now()
    if (this._staleTimer !== null) clearTimeout(this._staleTimer)
    this._staleTimer = setTimeout(() => {
      this._staleTimer = null
      // No frame, not even a ping, for too long: the socket is dead even if
      // the browser has not noticed. Retry at once; later failures back off.
      this._lost("stale")
      if (this.state === "waiting") {
        this._clearReconnect()
        this._open()
      }
    }, this.options.staleThreshold)
  }

  _stopTimers() {
    if (this._staleTimer !== null) clearTimeout(this._staleTimer)
    if (this._retryTimer !== null) clearInterval(this._retryTimer)
    this._staleTimer = this._retryTimer = null
  }

  _listen() {
    if (this._listening) return
    this._listening = true
    this._onVisibility = () => {
      if (globalThis.document?.visibilityState === "visible") this._reconnectNow("visible")
    }
    this._onOnline = () => this._reconnectNow("online")
    this._onPageHide = () => this._pageHidden()
    globalThis.document?.addEventListener?.("visibilitychange", this._onVisibility)
    globalThis.addEventListener?.("online", this._onOnline)
    globalThis.addEventListener?.("pagehide", this._onPageHide)
  }

  _unlisten() {
    if (!this._listening) return
    this._listening = false
    globalThis.document?.removeEventListener?.("visibilitychange", this._onVisibility)
    globalThis.removeEventListener?.("online", this._onOnline)
    globalThis.removeEventListener?.("pagehide", this._onPageHide)
  }

  // -- subscriptions ----------------------------------------------------------

  _group(identifier) {
    return [...(this._subscriptions.get(identifier) ?? [])]
  }

  _isConfirmed(group, except) {
    return [...group].some((other) => other !== except && other.confirmed)
  }

  _subscribeCommand(identifier) {
    // Confirmed before, on an extended connection: ask for what it missed.
    if (!this.extended || !this._positions.has(identifier)) return { command: "subscribe", identifier }
    return { command: "subscribe", identifier, history: this._historyRequest(identifier) }
  }

  _sendSubscribe(identifier) {
    if (!this._welcomed) return
    this._pending.add(identifier)
    this._send(this._subscribeCommand(identifier))
    // Some servers drop a subscribe that races their connection setup;
    // Rails 7's client re-sends until answered, and so do we.
    if (this._retryTimer === null) {
      this._retryTimer = setInterval(() => {
        if (this._pending.size === 0) {
          clearInterval(this._retryTimer)
          this._retryTimer = null
          return
        }
        for (const pending of this._pending) this._send(this._subscribeCommand(pending))
      }, this.options.subscribeRetryInterval)
    }
  }

  _remove(subscription) {
    if (subscription.closed) return
    this._failCalls("unsubscribed", "the subscription was left", subscription)
    subscription.closed = true
    subscription.confirmed = false
    const key = subscription.identifier
    const group = this._subscriptions.get(key)
    if (!group || !group.delete(subscription)) return
    if (group.size > 0) return
    this._subscriptions.delete(key)
    this._pending.delete(key)
    this._positions.delete(key)
    if (this._welcomed) this._send({ command: "unsubscribe", identifier: key })
  }

  _sendMessage(subscription, data) {
    if (subscription.closed || !this._welcomed) return false
    return this._send({
      command: "message",
      identifier: subscription.identifier,
      data: JSON.stringify(data),
    })
  }

  _sendCommand(subscription, command, extra = {}) {
    // AnyCable's presence commands (accepted by trio_cable in actioncable-v1-json too).
    if (subscription.closed || !this._welcomed) return false
    return this._send({ command, identifier: subscription.identifier, ...extra })
  }

  _callAction(subscription, data, timeout) {
    return new Promise((resolve, reject) => {
      if (subscription.closed) {
        reject(new CallError("unsubscribed", "the subscription is closed", data.action))
        return
      }
      const ref = ++this._nextRef
      const call = { subscription, action: data.action, data, resolve, reject, sent: false, timer: null }
      call.timer = setTimeout(
        () => this._settle(ref, new CallError("timeout", `no reply within ${timeout} ms`, call.action)),
        timeout,
      )
      this._calls.set(ref, call)
      if (this._welcomed && subscription.confirmed) this._sendCall(ref, call)
    })
  }

  _sendCall(ref, call) {
    call.sent = this._send({
      command: "message",
      identifier: call.subscription.identifier,
      data: JSON.stringify(call.data),
      ref,
    })
  }

  _settle(ref, error, result) {
    const call = this._calls.get(ref)
    if (!call) return
    this._calls.delete(ref)
    clearTimeout(call.timer)
    if (error) call.reject(error)
    else call.resolve(result)
  }

  _failCalls(reason, message, subscription, sentOnly = false) {
    for (const [ref, call] of this._calls) {
      if (subscription && call.subscription !== subscription) continue
      if (sentOnly && !call.sent) continue
      this._settle(ref, new CallError(reason, message, call.action))
    }
  }

  _send(command) {
    const socket = this.socket
    if (!socket || socket.readyState !== OPEN) return false
    socket.send(JSON.stringify(command))
    return true
  }

  _setState(state, reason, extra = {}) {
    if (this.state === state) return
    this.state = state
    if (state !== "waiting") this.retryAt = null
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, reason, ...extra } }))
  }

  _report(error) {
    const report = this.options.onError ?? ((e) => globalThis.console?.error?.("cable.js:", e))
    report(error)
  }
}

/** A new cable, for a second connection on one page (or a custom URL). */
export function createCable(url, options) {
  return new Cable(url, options)
}

/** The page's default cable (/cable on the current host). */
export const cable = createCable()

// -- Turbo Streams -------------------------------------------------------------

/** Apply Turbo Stream HTML: through Turbo when the page has it, otherwise
 * with the built-in renderer (the basic actions; morph acts as replace or
 * update, refresh reloads the page). */
export function renderStreamMessage(html) {
  const turbo = globalThis.Turbo
  if (turbo && typeof turbo.renderStreamMessage === "function") {
    turbo.renderStreamMessage(html)
    return
  }
  const template = document.createElement("template")
  template.innerHTML = html
  for (const stream of template.content.querySelectorAll("turbo-stream")) applyStream(stream)
}

function applyStream(stream) {
  const action = stream.getAttribute("action")
  const target = stream.getAttribute("target")
  const selector = stream.getAttribute("targets")
  const targets = target
    ? [document.getElementById(target)].filter(Boolean)
    : selector
      ? [...document.querySelectorAll(selector)]
      : []
  const content = () => stream.querySelector("template")?.content.cloneNode(true) ?? document.createDocumentFragment()
  if (action === "refresh") {
    globalThis.location?.reload()
    return
  }
  for (const element of targets) {
    switch (action) {
      case "append":
        element.append(content())
        break
      case "prepend":
        element.prepend(content())
        break
      case "before":
        element.before(content())
        break
      case "after":
        element.after(content())
        break
      case "replace":
        element.replaceWith(content())
        break
      case "update":
        element.replaceChildren(content())
        break
      case "remove":
        element.remove()
        break
      default:
        globalThis.console?.warn?.(`cable.js: unknown turbo-stream action ${action} (load Turbo for custom actions)`)
    }
  }
}

/** Subscribe to `channel` and apply every Turbo Stream it sends. */
export function streamFrom(channel, params = {}, options = {}) {
  const target = options.cable ?? cable
  return target.subscribe(channel, params, {
    received(data) {
      if (typeof data === "string") renderStreamMessage(data)
    },
    ...(options.callbacks ?? {}),
  })
}

const BaseElement = globalThis.HTMLElement ?? class {}

/**
 * <turbo-stream-channel channel="ChatChannel" params='{"room": "general"}'>:
 * subscribed while it is in the document, unsubscribed when removed. Turbo
 * Streams it receives go to Turbo as from any stream source (the element is
 * registered with Turbo.connectStreamSource, like turbo-rails'
 * <turbo-cable-stream-source>). The attribute `connected` is set while the
 * subscription is confirmed. `signed-stream-name` is sent as the
 * `signed_stream_name` param (for Turbo::StreamsChannel). After a
 * reconnect it fires `turbo-stream-channel:recovered` (the streams it
 * missed were applied) or `turbo-stream-channel:history-lost`.
 */
export class TurboStreamChannelElement extends BaseElement {
  static observedAttributes = ["channel", "params", "signed-stream-name"]

  /** The cable elements use; set it to use another one. */
  static cable = cable

  connectedCallback() {
    this._attachTurbo()
    const channel = this.getAttribute("channel")
    if (!channel) return
    const element = this
    this.subscription = TurboStreamChannelElement.cable.subscribe(channel, this.params, {
      connected() {
        element.setAttribute("connected", "")
        element.dispatchEvent(new CustomEvent("turbo-stream-channel:connected"))
      },
      disconnected() {
        element.removeAttribute("connected")
      },
      rejected() {
        element.removeAttribute("connected")
        element.dispatchEvent(new CustomEvent("turbo-stream-channel:rejected"))
      },
      received(data) {
        element._received(data)
      },
      // Extended protocol, after a reconnect: what was missed has been
      // applied, or could not be (reload what the element shows).
      recovered() {
        element.dispatchEvent(new CustomEvent("turbo-stream-channel:recovered"))
      },
      historyLost() {
        element.dispatchEvent(new CustomEvent("turbo-stream-channel:history-lost"))
      },
    })
  }

  disconnectedCallback() {
    this.subscription?.unsubscribe()
    this.subscription = undefined
    this.removeAttribute("connected")
    if (this._turbo) this._turbo.disconnectStreamSource(this)
    this._turbo = undefined
  }

  attributeChangedCallback(name, oldValue, newValue) {
    if (oldValue === newValue || !this.subscription) return
    this.disconnectedCallback()
    this.connectedCallback()
  }

  get params() {
    let params = {}
    const raw = this.getAttribute("params")
    if (raw) {
      try {
        params = JSON.parse(raw)
      } catch (error) {
        globalThis.console?.error?.("<turbo-stream-channel>: params is not JSON", error)
      }
    }
    const signed = this.getAttribute("signed-stream-name")
    return signed ? { ...params, signed_stream_name: signed } : params
  }

  /** perform() on the element's subscription (false if not subscribed). */
  perform(action, data = {}) {
    return this.subscription ? this.subscription.perform(action, data) : false
  }

  _attachTurbo() {
    const turbo = globalThis.Turbo
    if (this._turbo || !turbo || typeof turbo.connectStreamSource !== "function") return
    turbo.connectStreamSource(this)
    this._turbo = turbo
  }

  _received(data) {
    if (typeof data !== "string") return
    this._attachTurbo() // Turbo may have loaded after the element
    if (this._turbo) this.dispatchEvent(new MessageEvent("message", { data }))
    else renderStreamMessage(data)
  }
}

if (globalThis.customElements && !globalThis.customElements.get("turbo-stream-channel")) {
  globalThis.customElements.define("turbo-stream-channel", TurboStreamChannelElement)
}
