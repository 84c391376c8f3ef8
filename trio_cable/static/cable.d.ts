// Types for cable.js, trio_cable's browser client (actioncable-v1-ext-json,
// falling back to actioncable-v1-json).

export declare const EXT_PROTOCOL: "actioncable-v1-ext-json"
/** Offered by default, best first. */
export declare const PROTOCOLS: readonly ["actioncable-v1-ext-json", "actioncable-v1-json", "actioncable-unsupported"]
/** Offered with `extended: false`. */
export declare const PLAIN_PROTOCOLS: readonly ["actioncable-v1-json", "actioncable-unsupported"]

export interface CableOptions {
  /** Path used when no URL is given and the page has no
   * <meta name="action-cable-url">. Default "/cable". */
  path?: string
  /** First reconnect delay in ms (then doubled each attempt). Default 1000. */
  reconnectBaseDelay?: number
  /** Largest reconnect delay in ms. Default 5000. */
  reconnectMaxDelay?: number
  /** Each delay is moved by up to ±jitter (a fraction). Default 0.2. */
  reconnectJitter?: number
  /** Reconnect attempts before giving up. Default Infinity (never). */
  reconnectAttempts?: number
  /** ms without any frame (pings come every 3 s) before the connection
   * counts as dead and is replaced. Default 6000. */
  staleThreshold?: number
  /** ms between re-sends of an unanswered subscribe. Default 500. */
  subscribeRetryInterval?: number
  /** ms a call() waits for its reply before rejecting. Default 10000. */
  callTimeout?: number
  /** Offer AnyCable's actioncable-v1-ext-json first (session resumption,
   * recovery of missed broadcasts, whispers). Default true; a server that
   * does not speak it selects actioncable-v1-json. */
  extended?: boolean
  /** Extended protocol: answer every ping with a pong (for servers with a
   * pong timeout). Default true. */
  pongs?: boolean
  /** WebSocket constructor (default: globalThis.WebSocket). */
  WebSocket?: new (url: string, protocols: string[]) => WebSocket
  /** Random source for the jitter (default Math.random). */
  random?: () => number
  /** Receives errors thrown by callbacks and unparsable frames. */
  onError?: (error: unknown) => void
}

export declare const DEFAULTS: Readonly<Required<
  Pick<
    CableOptions,
    | "path"
    | "reconnectBaseDelay"
    | "reconnectMaxDelay"
    | "reconnectJitter"
    | "reconnectAttempts"
    | "staleThreshold"
    | "subscribeRetryInterval"
    | "callTimeout"
    | "extended"
    | "pongs"
  >
>>

export type Params = Record<string, unknown>

export interface DisconnectDetail {
  willAttemptReconnect: boolean
  /** "closed", "stale", "client", or the server's disconnect reason
   * ("server_restart", "unauthorized", "too_slow"...). */
  reason: string
}

export interface ConnectedDetail {
  reconnected: boolean
  /** Present and true when the server resumed the session (extended
   * protocol): the subscription was not subscribed again. */
  restored?: true
}

export interface Callbacks<T = any> {
  initialized?(this: Subscription<T>): void
  /** The server confirmed the subscription (again after a reconnect). */
  connected?(this: Subscription<T>, detail: ConnectedDetail): void
  disconnected?(this: Subscription<T>, detail: DisconnectDetail): void
  /** The server refused the subscription; it is forgotten. */
  rejected?(this: Subscription<T>): void
  received?(this: Subscription<T>, data: T): void
  /** After a reconnect (extended protocol): every broadcast the
   * subscription missed on its streams with history has reached
   * `received` (once, in order, before this); live ones follow. */
  recovered?(this: Subscription<T>): void
  /** After a reconnect (extended protocol): what was missed could not be
   * replayed (history expired, or another epoch: the server restarted
   * without keeping it). Load the current state another way; live
   * broadcasts go on. */
  historyLost?(this: Subscription<T>): void
  /** A member joined the channel's presence stream (docs/presence.md). */
  joined?(this: Subscription<T>, id: string, info: unknown): void
  /** A member left it (its last connection left, or dropped past the grace). */
  left?(this: Subscription<T>, id: string): void
}

/** A subscription's presence (the channel tracks presence on its stream). */
export declare class Presence {
  readonly subscription: Subscription
  /** {id: info} of every member once info() answered, kept up to date; else null. */
  readonly members: Record<string, unknown> | null
  /** Be member `id` with `info` (joined again after a reconnect); false if not sent. */
  join(id: string | number, info?: unknown): boolean
  /** Stop being a member; false if not sent. */
  leave(): boolean
  /** Every member; rejects when the channel tracks no presence or after `timeout` ms. */
  info(options?: { timeout?: number }): Promise<Record<string, unknown>>
  /** fn(id, info) for each join; returns a function that stops it. */
  onJoin(fn: (id: string, info: unknown) => void): () => void
  /** fn(id) for each leave; returns a function that stops it. */
  onLeave(fn: (id: string) => void): () => void
}

export declare class Subscription<T = any> {
  readonly cable: Cable
  readonly channel: string
  readonly params: Params
  /** JSON of {channel, ...params}: how frames find this subscription. */
  readonly identifier: string
  callbacks: Callbacks<T>
  /** True while the server has confirmed it on the current connection. */
  readonly confirmed: boolean
  readonly closed: boolean
  /** Call a server action; false when not sent (not connected, closed). */
  perform(action: string, data?: Params): boolean
  /**
   * Call a server action and resolve with its return value (trio_cable
   * servers). Waits to be connected and confirmed; rejects with a
   * {@link CallError} when the action fails or after `timeout` ms
   * (default `options.callTimeout`).
   */
  call<R = any>(action: string, data?: Params, options?: { timeout?: number }): Promise<R>
  /** Send data to the default action (receive). */
  send(data: Params): boolean
  /** Whisper to the other subscribers of the channel's whisper stream
   * (extended protocol); false when not sent. */
  whisper(data: unknown): boolean
  unsubscribe(): void
  /** Presence on the channel's presence stream. */
  readonly presence: Presence
}

/** Why a call() failed. */
export declare class CallError extends Error {
  constructor(reason: string, message: string, action: string)
  /**
   * The server's reason (`server_error`, `unknown_action`, `invalid_action`,
   * `not_subscribed`, `invalid_result`, an ActionError's own) or the
   * client's: `timeout`, `connection_lost`, `rejected`, `unsubscribed`.
   */
  readonly reason: string
  readonly action: string
}

export type CableState = "idle" | "connecting" | "open" | "waiting" | "failed" | "closed"

export declare class Cable extends EventTarget {
  constructor(url?: string | URL | (() => string), options?: CableOptions)
  url: string | URL | (() => string) | undefined
  readonly options: Required<Pick<CableOptions, keyof typeof DEFAULTS>> & CableOptions
  readonly state: CableState
  /** Reconnect attempts since the last welcome. */
  readonly attempts: number
  /** While `state` is "waiting": when the next attempt is due (Date.now()
   * milliseconds); otherwise null. */
  readonly retryAt: number | null
  readonly isConnected: boolean
  /** Whether the current socket speaks actioncable-v1-ext-json. */
  readonly extended: boolean
  /** The session id to resume on reconnect (extended protocol), or null. */
  readonly sessionId: string | null
  readonly subscriptions: Subscription[]
  connect(url?: string | URL | (() => string)): this
  disconnect(): this
  subscribe<T = any>(channel: string, callbacks?: Callbacks<T>): Subscription<T>
  subscribe<T = any>(channel: string, params: Params, callbacks?: Callbacks<T>): Subscription<T>
  // Events: "statechange" (detail {state, reason}, and retryIn (ms) when the
  // state is "waiting"), "connected" (detail
  // {reconnected, restored: the server resumed the session}),
  // "disconnected" (detail DisconnectDetail).
}

export declare function createCable(url?: string | URL | (() => string), options?: CableOptions): Cable
/** The page's default cable: /cable on the current host. */
export declare const cable: Cable

export declare function backoffDelay(attempt: number, options?: CableOptions, random?: () => number): number
export declare function identifierFor(channel: string, params?: Params): string
export declare function defaultUrl(path?: string): string

/** Apply Turbo Stream HTML (with Turbo when loaded, else the built-in renderer). */
export declare function renderStreamMessage(html: string): void
/** Subscribe and apply every Turbo Stream the channel sends. */
export declare function streamFrom(
  channel: string,
  params?: Params,
  options?: { cable?: Cable; callbacks?: Omit<Callbacks<string>, "received"> },
): Subscription<string>

/** <turbo-stream-channel channel="..." params='{...}' signed-stream-name="...">.
 * Events: "turbo-stream-channel:connected", "turbo-stream-channel:rejected",
 * and after a reconnect (extended protocol) "turbo-stream-channel:recovered"
 * or "turbo-stream-channel:history-lost". */
export declare class TurboStreamChannelElement extends HTMLElement {
  static cable: Cable
  readonly subscription: Subscription<string> | undefined
  readonly params: Params
  perform(action: string, data?: Params): boolean
}

declare global {
  interface HTMLElementTagNameMap {
    "turbo-stream-channel": TurboStreamChannelElement
  }
}
