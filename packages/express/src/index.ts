import { createServer, IncomingMessage, Server } from 'node:http'
import {
  type ClusterContext,
  type ClusterHandle,
  type ClusterOptions,
  codes,
  context,
  type HealthRoutes,
  healthFor,
  type ListenOptions,
  listen,
  listenOptionsFrom,
  runCluster,
  ShoalError,
  validateAdapterOptions,
} from '@shoal/core'
import type { RequestHandler } from 'express'

declare global {
  namespace Express {
    interface Request {
      /** This worker's cluster context: `{ workerId, slot, pid, shared, request }`. The same object on every request. */
      readonly cluster: ClusterContext
    }
  }
}

export type { ClusterContext, ClusterHandle, ClusterOptions, SharedSnapshot, SharedValues } from '@shoal/core'

/**
 * Defines `req.cluster` once, as a getter on Express's base request prototype (the one every app's
 * and sub-app's request inherits from), so no request pays for an assignment. `from` is a request's
 * prototype, or an app's `app.request`.
 */
function exposeContext(from: object): void {
  let proto: object | null = from
  while (proto && Object.getPrototypeOf(proto) !== IncomingMessage.prototype) proto = Object.getPrototypeOf(proto) as object | null
  if (proto && !Object.hasOwn(proto, 'cluster')) {
    Object.defineProperty(proto, 'cluster', { get: () => context, configurable: true, enumerable: false })
  }
}

/** Options for `clustered()`: the opt-in health routes. */
export type ClusteredOptions = HealthRoutes

/**
 * Gives every request `req.cluster`, and answers the opt-in readiness/liveness routes (readiness is
 * 503 with `Retry-After` while the worker drains). Draining itself (served with `Connection: close`,
 * never a 503) is done by `clusteredListen` on the server. A bad option (a path not starting with
 * '/', an unknown key) throws `ShoalError` (SHOAL_ERR_INVALID_OPTION) here, at the call.
 * @example app.use(clustered({ readinessPath: '/readyz', livenessPath: '/livez' }))
 */
export function clustered(options: ClusteredOptions = {}): RequestHandler {
  if (options instanceof IncomingMessage) throw notAFactory() // app.use(clustered): Express calls it with (req, res, next)
  validateAdapterOptions(options, ['readinessPath', 'livenessPath'])
  let exposed = false
  const routes = options.readinessPath !== undefined || options.livenessPath !== undefined ? options : undefined
  return function shoalClustered(req, res, next) {
    if (!exposed) {
      exposeContext(Object.getPrototypeOf(req) as object)
      exposed = true
    }
    const health = routes && healthFor(req.path, routes)
    if (health) {
      res.status(health.statusCode).set(health.headers).json(health.body)
      return
    }
    next()
  }
}

/** An Express app, or any `(req, res)` request listener. */
export type RequestListener = Parameters<typeof createServer>[1] & {}

/**
 * In the primary: forks and supervises workers, resolves to the `Primary` handle.
 * In a worker: listens (after the shared values arrived), drains gracefully on shutdown, reports
 * ready, resolves to `{ role: 'worker', address }`. With `workers: 0`: runs in this process.
 * A listen error (EADDRINUSE, EACCES) rejects with `SHOAL_ERR_LISTEN`; in a worker it is a failed boot.
 * Pass an `http.Server` instead of the app to attach a WebSocket server to it first.
 * @example await clusteredListen(app, 3000, { shared: { usersCount: { everyMs: 10_000, compute: countUsers } } })
 */
export async function clusteredListen(
  app: RequestListener | Server,
  port: number | string | ListenOptions,
  options: ClusterOptions = {},
): Promise<ClusterHandle> {
  const listenOptions = listenOptionsFrom(port)
  const { request } = app as { request?: unknown }
  if (typeof request === 'object' && request !== null) {
    if (routerStack(app as RequestListener).some((layer) => layer.handle === clustered)) throw notAFactory()
    exposeContext(request) // req.cluster even on an app that never app.use(clustered())
  }
  return runCluster(options, () => {
    const server = app instanceof Server ? app : createServer(app)
    return { server, listen: () => listen(server, listenOptions) }
  })
}

function notAFactory(): ShoalError {
  return new ShoalError(
    codes.SHOAL_ERR_INVALID_OPTION,
    '`clustered` makes the middleware: use app.use(clustered()), not app.use(clustered)',
  )
}

/** The app's middleware layers: `app._router` in Express 4, `app.router` in Express 5. */
function routerStack(app: object): { handle?: unknown }[] {
  const a = app as { router?: { stack?: unknown }; _router?: { stack?: unknown } }
  let router: { stack?: unknown } | undefined
  try {
    router = a._router ?? a.router // Express 4's app.router is a getter that throws
  } catch {
    return []
  }
  return Array.isArray(router?.stack) ? router.stack : []
}
