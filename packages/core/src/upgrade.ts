/**
 * Upgraded connections (WebSocket) on a draining server: how each is closed, and when. A draining
 * worker closes them with a close frame, 1012 (service restart) on a reload or 1001 (going away) on
 * shutdown, at jittered times spread over a window, so its clients reconnect to the other workers
 * gradually rather than in one herd. No dependency on `ws`: a WebSocket server is taken by shape.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'

/** Why a worker drains: replaced while the cluster keeps running, or going away with it. */
export type DrainReason = 'reload' | 'shutdown'

/** What a draining server asks of one upgraded connection. */
export interface UpgradeClose {
  /** 1012 (service restart) on a reload, 1001 (going away) on shutdown. */
  code: 1001 | 1012
  /** A short human reason for the close frame. */
  reason: string
  drainReason: DrainReason
}

/** Closes one upgraded connection on drain: send a last message, then close with `code`. */
export type UpgradeCloser = (close: UpgradeClose) => void

export function closeFor(drainReason: DrainReason): UpgradeClose {
  return drainReason === 'reload'
    ? { code: 1012, reason: 'server restarting, reconnect', drainReason }
    : { code: 1001, reason: 'server going away', drainReason }
}

const closers = new WeakMap<Duplex, UpgradeCloser>()

/**
 * Takes over how a draining server closes one upgraded socket (the app's own last message, its own
 * WebSocket library). Without one, shoal writes a close frame on the raw socket itself.
 * @example onUpgradeDrain(req.socket, ({ code, reason }) => myWs.close(code, reason))
 */
export function onUpgradeDrain(socket: Duplex, closer: UpgradeCloser): void {
  closers.set(socket, closer)
}

export function closerOf(socket: Duplex): UpgradeCloser | undefined {
  return closers.get(socket)
}

/** The shape of a `ws` WebSocket that shoal uses. */
export interface WebSocketLike {
  close(code?: number, reason?: string): void
}

/** The shape of a `ws` `WebSocketServer` (also `@fastify/websocket`'s `fastify.websocketServer`). */
export interface WebSocketServerLike<T extends WebSocketLike = WebSocketLike> {
  on(event: 'connection', listener: (ws: T, req: IncomingMessage) => void): unknown
}

export interface WebSocketDrainOptions<T extends WebSocketLike> {
  /**
   * Called instead of `ws.close(code, reason)` when this connection's turn to close comes: send the
   * app's own message, then close (with `close.code`). A connection still open at the deadline is cut.
   * @default undefined (`ws.close(close.code, close.reason)`)
   * @example onDrain: (ws, close) => { ws.send(JSON.stringify({ type: 'reconnect' })); ws.close(close.code, close.reason) }
   */
  onDrain?: (ws: T, close: UpgradeClose) => void
}

/**
 * Makes a draining worker close this `ws` server's clients through `ws` itself (a proper closing
 * handshake), with 1012 on a reload and 1001 on shutdown, spread over `webSocketCloseWindowMs`.
 * One line after creating the server; `@shoal/fastify` does it for `@fastify/websocket` by itself.
 * @example closeWebSocketsOnDrain(new WebSocketServer({ server }))
 */
export function closeWebSocketsOnDrain<T extends WebSocketLike>(
  wss: WebSocketServerLike<T>,
  options: WebSocketDrainOptions<T> = {},
): WebSocketServerLike<T> {
  const { onDrain } = options
  wss.on('connection', (ws, req) => {
    // `@fastify/websocket`'s injectWS (tests) emits a request without a socket.
    if (!req?.socket) return
    onUpgradeDrain(req.socket, onDrain ? (close) => onDrain(ws, close) : (close) => ws.close(close.code, close.reason))
  })
  return wss
}

/** A server's unmasked WebSocket close frame (RFC 6455 §5.5.1), for a raw socket no library owns. */
export function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123) // control frames carry ≤ 125 bytes
  const frame = Buffer.alloc(4 + text.length)
  frame[0] = 0x88 // FIN + opcode 8 (close)
  frame[1] = 2 + text.length
  frame.writeUInt16BE(code, 2)
  text.copy(frame, 4)
  return frame
}

/** True for an upgrade request that asked for WebSocket (anything else gets no close frame). */
export function isWebSocketRequest(req: IncomingMessage | undefined): boolean {
  return req?.headers.upgrade?.toLowerCase() === 'websocket'
}

/**
 * When each of `count` connections is closed, in ms from the drain's start: one jittered point in
 * each of `count` equal parts of the window, in random order. Evenly spread (no two clients of one
 * part close together by chance), unpredictable per connection.
 */
export function spreadDelaysMs(count: number, windowMs: number, random: () => number = Math.random): number[] {
  const part = count > 0 ? windowMs / count : 0
  const delays = Array.from({ length: count }, (_, i) => Math.floor((i + random()) * part))
  for (let i = delays.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const a = delays[i] as number
    delays[i] = delays[j] as number
    delays[j] = a
  }
  return delays
}

/**
 * The window actually used: the configured one, shortened so the closing handshakes still fit
 * before the deadline (a second, or half the deadline when that is shorter).
 */
export function closeWindowMs(configuredMs: number, shutdownTimeoutMs: number): number {
  const handshakeMs = Math.min(1000, shutdownTimeoutMs / 2)
  return Math.max(0, Math.min(configuredMs, Math.floor(shutdownTimeoutMs - handshakeMs)))
}
