import {
  attachToServer,
  type ClusterContext,
  type ClusterHandle,
  type ClusterOptions,
  closeWebSocketsOnDrain,
  context,
  type HealthReply,
  type HealthRoutes,
  listenOptionsFrom,
  liveness,
  readiness,
  runCluster,
  trackServer,
  validateAdapterOptions,
  WORKER_SIDE_NAMES,
  type WorkerSideOptions,
  workerSideOptions,
} from '@shoal/core'
import type { FastifyInstance, FastifyListenOptions } from 'fastify'
import fp from 'fastify-plugin'

declare module 'fastify' {
  interface FastifyRequest {
    /** This worker's cluster context: `{ workerId, slot, pid, shared, request }`. The same object on every request. */
    readonly cluster: ClusterContext
  }
  interface FastifyInstance {
    /** This worker's cluster context, outside a request. */
    readonly cluster: ClusterContext
  }
}

export type { ClusterContext, ClusterHandle, ClusterOptions, SharedSnapshot, SharedValues } from '@shoal/core'

/** The opt-in health routes, and the drain options for an app started with a plain `app.listen()`. */
export type ClusterPluginOptions = HealthRoutes & WorkerSideOptions

const PLUGIN_OPTIONS = ['readinessPath', 'livenessPath', ...WORKER_SIDE_NAMES] as const
/** What Fastify's `register` itself takes; it reaches the plugin along with its options. */
const REGISTER_OPTIONS = ['prefix', 'logLevel', 'logSerializers']

/**
 * Decorates `request.cluster` and `fastify.cluster` (getters over the worker's one context) and
 * hands the server to shoal's drain: on shutdown the server drains first (requests that reach it are
 * served with `Connection: close`), then `fastify.close()` runs the `onClose` hooks. Without
 * `clusteredListen`, a plain `app.listen()` gets the same SIGINT/SIGTERM handling. A bad option
 * rejects the registration with `ShoalError` (SHOAL_ERR_INVALID_OPTION): the app does not start.
 * @example await app.register(clusterPlugin)
 */
export const clusterPlugin = fp<ClusterPluginOptions>(
  async function shoalCluster(fastify, options) {
    // Here, not in onListen: Fastify only logs an onListen error and serves without drain or signals.
    validateAdapterOptions(options, PLUGIN_OPTIONS, REGISTER_OPTIONS)
    fastify.decorate('cluster', { getter: () => context })
    fastify.decorateRequest('cluster', { getter: () => context })
    const route = (path: string | undefined, answer: () => HealthReply) => {
      if (path === undefined) return
      fastify.get(path, { logLevel: 'warn' }, async (_request, reply) => {
        const health = answer()
        return reply.code(health.statusCode).headers(health.headers).send(health.body)
      })
    }
    route(options.readinessPath, readiness)
    route(options.livenessPath, liveness)
    trackServer(fastify.server) // counts connections from the first one on
    // @fastify/websocket (registered before or after this plugin): its clients get 1012/1001 through
    // `ws`, spread over the window, before its own preClose would close them all at once without a code.
    fastify.addHook('onReady', async () => {
      const wss = (fastify as { websocketServer?: Parameters<typeof closeWebSocketsOnDrain>[0] }).websocketServer
      if (wss) closeWebSocketsOnDrain(wss)
    })
    // A plain app.listen(): same drain and signals. Under clusteredListen the server is attached already.
    fastify.addHook('onListen', async () => attachToServer(fastify.server, workerSideOptions(options), () => fastify.close()))
  },
  { name: '@shoal/fastify', fastify: '5.x' },
)

/**
 * In the primary: forks and supervises workers, resolves to the `Primary` handle.
 * In a worker: registers `clusterPlugin` if the app has not, listens with Fastify's own `listen`
 * (after the shared values arrived), reports ready, resolves to `{ role: 'worker', address }`.
 * With `workers: 0`: runs in this process. `listenOptions` may be a port (`3000`, `process.env.PORT`).
 * @example await clusteredListen(app, { port: 3000, host: '0.0.0.0' }, { workers: 4 })
 */
export async function clusteredListen(
  app: FastifyInstance,
  listenOptions: FastifyListenOptions | number | string,
  options: ClusterOptions = {},
): Promise<ClusterHandle> {
  const listenTo = listenOptionsFrom(listenOptions)
  return runCluster(options, async () => {
    if (!app.hasPlugin('@shoal/fastify')) await app.register(clusterPlugin, workerSideOptions(options))
    return { server: app.server, listen: () => app.listen(listenTo), close: () => app.close() }
  })
}
