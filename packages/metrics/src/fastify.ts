/**
 * Fastify: `await app.register(clusterMetricsPlugin)` serves the cluster's metrics at `/metrics`.
 * A plain (encapsulated) plugin: it only adds a route, so a `prefix` applies as usual.
 */
import { codes, ShoalError } from '@shoal/core'
import type { FastifyPluginAsync } from 'fastify'
import { type ClusterMetricsOptions, createClusterMetrics } from './index.js'

export interface ClusterMetricsPluginOptions extends ClusterMetricsOptions {
  /**
   * Where the metrics are served.
   * @default '/metrics'
   * @example path: '/internal/metrics'
   */
  path?: string
}

/**
 * @example
 * import { clusterMetricsPlugin } from '@shoal/metrics/fastify'
 * await app.register(clusterMetricsPlugin, { timeoutMs: 1000 })
 */
export const clusterMetricsPlugin: FastifyPluginAsync<ClusterMetricsPluginOptions> = async (fastify, options) => {
  // Fastify's own register options are not ours; anything else unknown is a typo, named by createClusterMetrics.
  const {
    path = '/metrics',
    prefix: _prefix,
    logLevel: _logLevel,
    logSerializers: _logSerializers,
    ...rest
  } = options as typeof options & {
    prefix?: unknown
    logLevel?: unknown
    logSerializers?: unknown
  }
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new ShoalError(codes.SHOAL_ERR_INVALID_OPTION, `Expected \`path\` to be a path starting with '/', got \`${String(path)}\``)
  }
  const metrics = createClusterMetrics(rest)
  fastify.get(path, async (_request, reply) => {
    try {
      const { contentType, body } = await metrics.scrape()
      return reply.type(contentType).send(body)
    } catch (err) {
      return reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .send(`metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`)
    }
  })
}
