import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'
import { closeFor, closeFrame, closerOf, closeWindowMs, type DrainReason, isWebSocketRequest, spreadDelaysMs } from './upgrade.js'

export interface DrainOptions {
  /** Past this, every socket is closed and `drain()` resolves `'timeout'`. */
  shutdownTimeoutMs: number
  /** A keep-alive socket is closed only once it has sat idle this long. */
  idleSocketGraceMs: number
  /**
   * Upgraded connections (WebSocket) are closed at jittered times spread over this window, shortened
   * to fit before the deadline. 0 closes them all at once.
   * @default 0
   */
  webSocketCloseWindowMs?: number
  /** Picks the close code: 1012 on `'reload'`, 1001 on `'shutdown'`. @default 'shutdown' */
  reason?: DrainReason
}

export type DrainResult = 'drained' | 'timeout'

/** How a drain closed upgraded connections. */
export interface UpgradeCloseCounts {
  /** The close code sent (1012 or 1001), 0 before the drain. */
  code: number
  /** By the app's or the WebSocket library's closer (`onUpgradeDrain`, `closeWebSocketsOnDrain`). */
  byCloser: number
  /** By a close frame shoal wrote on the raw socket. */
  byFrame: number
  /** Not WebSocket (or the closer threw): destroyed. */
  destroyed: number
  /** Still open at the deadline: cut. */
  cutAtDeadline: number
}

export interface ServerDrain {
  /** True from the moment `drain()` is called. */
  readonly closing: boolean
  /** Connections with a response in progress (upgraded ones are not). */
  readonly inFlight: number
  /** Open upgraded connections (WebSocket). */
  readonly upgraded: number
  /** How the upgraded connections were closed by the drain so far. */
  readonly upgradeCloses: UpgradeCloseCounts
  /** Stops accepting, lets in-flight and already-sent requests finish, closes idle keep-alive sockets. Idempotent. */
  drain(options: DrainOptions): Promise<DrainResult>
}

/**
 * What `http` itself keeps on a socket, read only while draining: the response it is writing
 * (`_httpMessage`), and its parser, whose `incoming` is the last request whose headers arrived.
 */
type HttpSocket = Socket & {
  _httpMessage?: DrainingResponse | null
  parser?: { incoming?: IncomingMessage | null } | null
}
/** Node's own list of a server's connections (Node ≥ 18.14), what `closeIdleConnections` reads. */
type ConnectionsList = { active(): { socket?: Socket }[] }
/** `_last`: Node closes the socket once this response is written (it carries `Connection: close`). */
type DrainingResponse = ServerResponse & { [kSocket]?: Socket; [kClosedByUs]?: boolean; _last?: boolean }

const tracked = new WeakMap<Server, ServerDrain>()
const kSocket = Symbol('shoal.socket')
const kClosedByUs = Symbol('shoal.closedByUs')

const busy = (socket: Socket): boolean => Boolean((socket as HttpSocket)._httpMessage)

/**
 * The sockets on which a request has begun to arrive and is not complete yet: not idle. Node's
 * connections list marks a parser active from a message's first byte until it completed (and from a
 * connection's start, for headersTimeout: a socket that never sent a byte is not receiving).
 * Node 24 dropped the parser's `duration()`; the list is the same on every version we support.
 */
function receivingSockets(server: Server): Set<Socket> {
  const key = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections')
  const list = key ? ((server as unknown as Record<symbol, ConnectionsList | undefined>)[key] ?? undefined) : undefined
  const out = new Set<Socket>()
  for (const parser of list?.active() ?? []) if (parser.socket && parser.socket.bytesRead > 0) out.add(parser.socket)
  return out
}

/** No later request has arrived on the socket (pipelined), so this response may close it. */
const lastOnSocket = (socket: Socket, res: ServerResponse): boolean => {
  const latest = (socket as HttpSocket).parser?.incoming
  return !latest || latest === res.req
}

/**
 * Tracks a server's connections so it can be drained without dropping a request: a request that
 * reaches a draining server is served, with `Connection: close`; a keep-alive socket is closed only
 * after it sat idle `idleSocketGraceMs` (a request may already be on the wire), and a socket that has
 * received part of a request is not idle (only the deadline cuts it). Requests pipelined on one socket
 * are all answered, `Connection: close` on the last; one that arrives after a response that closes the
 * socket was committed is never dispatched (RFC 9112 §9.6: the client retries it). Call before the
 * server listens; one tracker per server. Until `drain()`, the cost is one set entry per connection and
 * nothing per request: busy or idle is read off the socket when draining starts. Upgraded connections
 * (WebSocket) are neither: on drain each is closed at its own jittered point of
 * `webSocketCloseWindowMs` (1012 on a reload, 1001 on shutdown; see upgrade.ts), and the server counts
 * as drained once they are gone.
 */
export function trackServer(server: Server): ServerDrain {
  const existing = tracked.get(server)
  if (existing) return existing

  const sockets = new Set<Socket>()
  /** Upgraded sockets have left http's bookkeeping: they are neither busy nor idle. */
  const upgraded = new Map<Socket, IncomingMessage>()
  const counts: UpgradeCloseCounts = { code: 0, byCloser: 0, byFrame: 0, destroyed: 0, cutAtDeadline: 0 }
  let closeLate: ((socket: Socket) => void) | undefined
  let closing = false
  let drainStartedAt = 0
  let graceMs = 0
  let result: Promise<DrainResult> | undefined
  // Only while draining:
  const idleSince = new Map<Socket, number>()
  const timers = new Map<Socket, NodeJS.Timeout>()
  const lastResponse = new Map<Socket, DrainingResponse>()

  const closeWhenIdle = (socket: Socket): void => {
    clearTimeout(timers.get(socket))
    if (socket.destroyed || busy(socket)) return
    // Idle time counts from the drain's start at the earliest: a socket that sat in the client's pool
    // is exactly the one the client reaches for once the busy sockets answer `Connection: close`.
    const idleFor = Date.now() - Math.max(idleSince.get(socket) ?? 0, drainStartedAt)
    const timer = setTimeout(
      () => {
        // A request still arriving (slow headers) is served once complete; only the deadline cuts it.
        if (!busy(socket) && !upgraded.has(socket) && !receivingSockets(server).has(socket)) socket.destroy()
      },
      Math.max(0, graceMs - idleFor),
    )
    timer.unref()
    timers.set(socket, timer)
  }

  function onResponseClose(this: DrainingResponse): void {
    const socket = this[kSocket]
    if (!socket) return
    // A request pipelined before the drain now has the socket: follow it too.
    const next = (socket as HttpSocket)._httpMessage
    if (next && next !== this) {
      follow(next, socket)
      return
    }
    idleSince.set(socket, Date.now())
    closeWhenIdle(socket)
  }

  /** Every response while draining: closes the socket after it, unless a later request is already queued behind it. */
  const follow = (res: DrainingResponse, socket: Socket): void => {
    if (res[kSocket]) return
    res[kSocket] = socket
    if (!res.headersSent && lastOnSocket(socket, res)) {
      res.setHeader('Connection', 'close')
      res[kClosedByUs] = true
    }
    res.on('close', onResponseClose)
  }

  /** A request reaching the draining server: dispatched (and followed), or dropped unseen if it could not be answered. */
  const admit = (req: IncomingMessage, res: DrainingResponse): boolean => {
    const socket = req.socket
    clearTimeout(timers.get(socket))
    const previous = lastResponse.get(socket)
    // The socket closes after a response already sent with `Connection: close`: this one's answer would be lost.
    if (previous?.headersSent && previous._last) return false
    // Pipelined behind a response not yet sent: that one keeps the socket open, this one closes it.
    if (previous?.[kClosedByUs] && !previous.headersSent) {
      previous.setHeader('Connection', 'keep-alive')
      previous[kClosedByUs] = false
    }
    lastResponse.set(socket, res)
    follow(res, socket)
    return true
  }

  // TLS: the socket requests run on is the one from 'secureConnection'.
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      clearTimeout(timers.get(socket))
      timers.delete(socket)
      idleSince.delete(socket)
      lastResponse.delete(socket)
    })
    // A connection handed over while draining still gets its request served (with Connection: close).
    if (closing) closeWhenIdle(socket)
  })

  // Node emits 'upgrade' only when the app listens for it (else it destroys the socket): ours rides
  // along only while the app has one, so an app without WebSockets keeps Node's behaviour.
  const onUpgrade = (req: IncomingMessage, socket: Socket): void => {
    if (upgraded.has(socket) || socket.destroyed) return
    upgraded.set(socket, req)
    clearTimeout(timers.get(socket))
    socket.once('close', () => upgraded.delete(socket))
    // Upgraded while draining (its request was on the wire): closed like the others, within the window.
    closeLate?.(socket)
  }
  const followUpgrades = (): void => {
    const others = server.listeners('upgrade').filter((l) => l !== onUpgrade).length
    const ours = server.listeners('upgrade').includes(onUpgrade)
    if (others > 0 && !ours) server.prependListener('upgrade', onUpgrade)
    if (others === 0 && ours) server.off('upgrade', onUpgrade)
  }
  server.on('newListener', (event: string | symbol, listener: unknown) => {
    // Called before the app's listener is added: the count is checked once it is.
    if (event === 'upgrade' && listener !== onUpgrade) queueMicrotask(followUpgrades)
  })
  server.on('removeListener', (event: string | symbol, listener: unknown) => {
    if (event === 'upgrade' && listener !== onUpgrade) followUpgrades()
  })
  followUpgrades()

  const drain = (options: DrainOptions): Promise<DrainResult> => {
    result ??= new Promise<DrainResult>((resolve) => {
      closing = true
      drainStartedAt = Date.now()
      graceMs = options.idleSocketGraceMs
      // From now on every request passes `admit` before the app sees it; before, none did (no
      // per-request cost while serving). Overriding `emit` is the one way to not dispatch a request.
      const emit = server.emit
      server.emit = function (this: Server, event: string | symbol, ...args: unknown[]): boolean {
        if (event === 'request' && !admit(args[0] as IncomingMessage, args[1] as DrainingResponse)) return false
        return Reflect.apply(emit, this, [event, ...args]) as boolean
      } as Server['emit']
      const reason = options.reason ?? 'shutdown'
      const close = closeFor(reason)
      counts.code = close.code
      const closeUpgraded = (socket: Socket): void => {
        if (socket.destroyed) return
        const closer = closerOf(socket)
        try {
          if (closer) {
            closer(close)
            counts.byCloser++
            return
          }
        } catch {
          // The app's closer failed: the connection still has to go.
        }
        if (!closer && isWebSocketRequest(upgraded.get(socket))) {
          socket.end(closeFrame(close.code, close.reason))
          counts.byFrame++
          return
        }
        socket.destroy()
        counts.destroyed++
      }
      const windowMs = closeWindowMs(options.webSocketCloseWindowMs ?? 0, options.shutdownTimeoutMs)
      closeLate = (socket) => {
        // A random point in what is left of the window.
        const delayMs = Math.floor(Math.random() * Math.max(0, windowMs - (Date.now() - drainStartedAt)))
        setTimeout(() => closeUpgraded(socket), delayMs).unref()
      }
      const open = [...upgraded.keys()]
      spreadDelaysMs(open.length, windowMs).forEach((delayMs, i) => {
        setTimeout(() => closeUpgraded(open[i] as Socket), delayMs).unref()
      })
      for (const socket of sockets) {
        if (upgraded.has(socket)) continue
        const current = (socket as HttpSocket)._httpMessage
        if (current) {
          lastResponse.set(socket, current)
          follow(current, socket)
        } else closeWhenIdle(socket)
      }

      const deadline = setTimeout(() => {
        for (const socket of upgraded.keys()) if (!socket.destroyed) counts.cutAtDeadline++
        for (const socket of sockets) socket.destroy()
        resolve('timeout')
      }, options.shutdownTimeoutMs)
      deadline.unref()

      // net.Server#close, not http.Server#close: Node ≥ 19's http close also destroys idle sockets at
      // once, which resets a request already on the wire. We close idle sockets ourselves after a grace.
      // Its callback runs once the last connection is gone (with an error if it was not listening).
      NetServer.prototype.close.call(server, () => {
        clearTimeout(deadline)
        resolve('drained')
      })
    })
    return result
  }

  const handle: ServerDrain = {
    get closing() {
      return closing
    },
    get inFlight() {
      let count = 0
      for (const socket of sockets) if (busy(socket) && !upgraded.has(socket)) count++
      return count
    },
    get upgraded() {
      return upgraded.size
    },
    get upgradeCloses() {
      return { ...counts }
    },
    drain,
  }
  tracked.set(server, handle)
  return handle
}
