import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'
import { Server as TlsServer } from 'node:tls'

export interface DrainOptions {
  /** Past this, every socket is closed and `drain()` resolves `'timeout'`. */
  shutdownTimeoutMs: number
  /** A keep-alive socket is closed only once it has sat idle this long. */
  idleSocketGraceMs: number
}

export type DrainResult = 'drained' | 'timeout'

export interface ServerDrain {
  /** True from the moment `drain()` is called. */
  readonly closing: boolean
  /** Connections with a response in progress. */
  readonly inFlight: number
  /** Stops accepting, lets in-flight and already-sent requests finish, closes idle keep-alive sockets. Idempotent. */
  drain(options: DrainOptions): Promise<DrainResult>
}

/** The response Node is currently writing on a socket: what `http` itself uses to tell busy from idle. */
type HttpSocket = Socket & { _httpMessage?: ServerResponse | null }
type DrainingResponse = ServerResponse & { [kSocket]?: Socket }

const tracked = new WeakMap<Server, ServerDrain>()
const kSocket = Symbol('shoal.socket')

const busy = (socket: Socket): boolean => Boolean((socket as HttpSocket)._httpMessage)

/**
 * Tracks a server's connections so it can be drained without dropping a request: a request that
 * reaches a draining server is served, with `Connection: close`; a keep-alive socket is closed only
 * after it sat idle `idleSocketGraceMs` (a request may already be on the wire). Call before the server
 * listens; one tracker per server. Until `drain()`, the cost is one set entry per connection and
 * nothing per request: busy or idle is read off the socket when draining starts.
 */
export function trackServer(server: Server): ServerDrain {
  const existing = tracked.get(server)
  if (existing) return existing

  const sockets = new Set<Socket>()
  let closing = false
  let drainStartedAt = 0
  let graceMs = 0
  let result: Promise<DrainResult> | undefined
  // Only while draining:
  const idleSince = new Map<Socket, number>()
  const timers = new Map<Socket, NodeJS.Timeout>()

  const closeWhenIdle = (socket: Socket): void => {
    clearTimeout(timers.get(socket))
    if (socket.destroyed || busy(socket)) return
    // Idle time counts from the drain's start at the earliest: a socket that sat in the client's pool
    // is exactly the one the client reaches for once the busy sockets answer `Connection: close`.
    const idleFor = Date.now() - Math.max(idleSince.get(socket) ?? 0, drainStartedAt)
    const timer = setTimeout(
      () => {
        if (!busy(socket)) socket.destroy()
      },
      Math.max(0, graceMs - idleFor),
    )
    timer.unref()
    timers.set(socket, timer)
  }

  function onResponseClose(this: DrainingResponse): void {
    const socket = this[kSocket]
    if (!socket) return
    idleSince.set(socket, Date.now())
    closeWhenIdle(socket)
  }

  const follow = (res: DrainingResponse, socket: Socket): void => {
    if (!res.headersSent) res.setHeader('Connection', 'close')
    res[kSocket] = socket
    res.on('close', onResponseClose)
  }

  // TLS: the socket requests run on is the one from 'secureConnection'.
  server.on(server instanceof TlsServer ? 'secureConnection' : 'connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      clearTimeout(timers.get(socket))
      timers.delete(socket)
      idleSince.delete(socket)
    })
    // A connection handed over while draining still gets its request served (with Connection: close).
    if (closing) closeWhenIdle(socket)
  })

  const drain = (options: DrainOptions): Promise<DrainResult> => {
    result ??= new Promise<DrainResult>((resolve) => {
      closing = true
      drainStartedAt = Date.now()
      graceMs = options.idleSocketGraceMs
      // From now on every request is followed; before, none was (no per-request cost while serving).
      server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
        clearTimeout(timers.get(req.socket))
        follow(res, req.socket)
      })
      for (const socket of sockets) {
        const current = (socket as HttpSocket)._httpMessage
        if (current) follow(current, socket)
        else closeWhenIdle(socket)
      }

      const deadline = setTimeout(() => {
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
      for (const socket of sockets) if (busy(socket)) count++
      return count
    },
    drain,
  }
  tracked.set(server, handle)
  return handle
}
