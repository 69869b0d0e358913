import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { Server as NetServer, type Socket } from 'node:net'

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
  /** Requests currently being served. */
  readonly inFlight: number
  /** Stops accepting, lets in-flight and already-sent requests finish, closes idle keep-alive sockets. Idempotent. */
  drain(options: DrainOptions): Promise<DrainResult>
}

interface SocketState {
  socket: Socket
  /** Requests on this socket not finished yet (more than one only with pipelining). */
  active: number
  idleSince: number
  timer: NodeJS.Timeout | undefined
  /** The latest response on this socket, to mark `Connection: close` when draining starts. */
  current: ServerResponse | undefined
}

const tracked = new WeakMap<Server, ServerDrain>()
const kState = Symbol('shoal.socketState')

type TrackedResponse = ServerResponse & { [kState]?: SocketState }

/**
 * Tracks a server's sockets and requests so it can be drained without dropping a request:
 * a request that reaches a draining server is served, with `Connection: close`; a keep-alive socket
 * is closed only after it sat idle `idleSocketGraceMs` (a request may already be on the wire).
 * Call before the server listens. One tracker per server. The per-request cost is one map lookup,
 * a counter and one shared listener: no allocation on the hot path.
 */
export function trackServer(server: Server): ServerDrain {
  const existing = tracked.get(server)
  if (existing) return existing

  const sockets = new Map<Socket, SocketState>()
  let inFlight = 0
  let closing = false
  let drainStartedAt = 0
  let result: Promise<DrainResult> | undefined
  let graceMs = 0

  const closeWhenIdle = (state: SocketState): void => {
    if (!closing || state.active > 0 || state.socket.destroyed) return
    clearTimeout(state.timer)
    // Idle time counts from the drain's start at the earliest: a socket that sat in the client's pool
    // is exactly the one the client reaches for once the busy sockets answer `Connection: close`.
    const idleFor = Date.now() - Math.max(state.idleSince, drainStartedAt)
    state.timer = setTimeout(
      () => {
        if (state.active === 0) state.socket.destroy()
      },
      Math.max(0, graceMs - idleFor),
    )
    state.timer.unref()
  }

  function onResponseClose(this: TrackedResponse): void {
    inFlight--
    const state = this[kState]
    if (!state) return
    state.active--
    if (state.current === this) state.current = undefined
    state.idleSince = Date.now()
    closeWhenIdle(state)
  }

  server.on('connection', (socket: Socket) => {
    const state: SocketState = { socket, active: 0, idleSince: Date.now(), timer: undefined, current: undefined }
    sockets.set(socket, state)
    socket.once('close', () => {
      clearTimeout(state.timer)
      sockets.delete(socket)
    })
    // A connection handed over while draining still gets its request served (with Connection: close).
    closeWhenIdle(state)
  })

  // Runs before the framework's own 'request' listener.
  server.prependListener('request', (req: IncomingMessage, res: TrackedResponse) => {
    inFlight++
    const state = sockets.get(req.socket)
    if (state) {
      state.active++
      state.current = res
      clearTimeout(state.timer)
      res[kState] = state
    }
    if (closing) res.setHeader('Connection', 'close')
    res.on('close', onResponseClose)
  })

  const drain = (options: DrainOptions): Promise<DrainResult> => {
    result ??= new Promise<DrainResult>((resolve) => {
      closing = true
      drainStartedAt = Date.now()
      graceMs = options.idleSocketGraceMs
      for (const { current } of sockets.values()) if (current && !current.headersSent) current.setHeader('Connection', 'close')

      const deadline = setTimeout(() => {
        for (const socket of sockets.keys()) socket.destroy()
        resolve('timeout')
      }, options.shutdownTimeoutMs)
      deadline.unref()

      // net.Server#close, not http.Server#close: Node ≥ 19's http close also destroys idle sockets at
      // once, which resets a request already on the wire. We close idle sockets ourselves after a grace.
      const finish = (): void => {
        clearTimeout(deadline)
        resolve('drained')
      }
      // Its callback runs once the last connection is gone (with an error if it was not listening).
      NetServer.prototype.close.call(server, finish)
      for (const state of sockets.values()) closeWhenIdle(state)
    })
    return result
  }

  const handle: ServerDrain = {
    get closing() {
      return closing
    },
    get inFlight() {
      return inFlight
    },
    drain,
  }
  tracked.set(server, handle)
  return handle
}
