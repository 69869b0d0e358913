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
  active: number
  idleSince: number
  timer: NodeJS.Timeout | undefined
}

const tracked = new WeakMap<Server, ServerDrain>()

/**
 * Tracks a server's sockets and requests so it can be drained without dropping a request:
 * a request that reaches a draining server is served, with `Connection: close`; a keep-alive socket
 * is closed only after it sat idle `idleSocketGraceMs` (a request may already be on the wire).
 * Call before the server listens. One tracker per server.
 */
export function trackServer(server: Server): ServerDrain {
  const existing = tracked.get(server)
  if (existing) return existing

  const sockets = new Map<Socket, SocketState>()
  const pending = new Set<ServerResponse>()
  let closing = false
  let result: Promise<DrainResult> | undefined
  let graceMs = 0

  const closeWhenIdle = (socket: Socket, state: SocketState): void => {
    if (!closing || state.active > 0 || socket.destroyed) return
    clearTimeout(state.timer)
    const waitMs = Math.max(0, graceMs - (Date.now() - state.idleSince))
    state.timer = setTimeout(() => {
      if (state.active === 0) socket.destroy()
    }, waitMs)
    state.timer.unref()
  }

  server.on('connection', (socket: Socket) => {
    const state: SocketState = { active: 0, idleSince: Date.now(), timer: undefined }
    sockets.set(socket, state)
    socket.once('close', () => {
      clearTimeout(state.timer)
      sockets.delete(socket)
    })
    // A connection handed over while draining still gets its request served (with Connection: close).
    closeWhenIdle(socket, state)
  })

  // Runs before the framework's own 'request' listener.
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket
    const state = sockets.get(socket)
    if (state) {
      state.active++
      clearTimeout(state.timer)
    }
    pending.add(res)
    if (closing) res.setHeader('Connection', 'close')
    res.once('close', () => {
      pending.delete(res)
      if (!state) return
      state.active--
      state.idleSince = Date.now()
      closeWhenIdle(socket, state)
    })
  })

  const drain = (options: DrainOptions): Promise<DrainResult> => {
    result ??= new Promise<DrainResult>((resolve) => {
      closing = true
      graceMs = options.idleSocketGraceMs
      for (const res of pending) if (!res.headersSent) res.setHeader('Connection', 'close')

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
      for (const [socket, state] of sockets) closeWhenIdle(socket, state)
    })
    return result
  }

  const handle: ServerDrain = {
    get closing() {
      return closing
    },
    get inFlight() {
      return pending.size
    },
    drain,
  }
  tracked.set(server, handle)
  return handle
}
