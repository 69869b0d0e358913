import type { ClusterMetricsAnswer, MetricJson } from '@shoal/core'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { createClusterMetrics, primaryMetricsServer, renderAnswer, resolveMetricsOptions } from './index.js'

/** A worker's registry: `n` requests counted, a gauge, a histogram. */
async function workerJson(n: number, inFlight: number): Promise<MetricJson[]> {
  const registry = new Registry()
  const requests = new Counter({ name: 'http_requests_total', help: 'requests', labelNames: ['code'], registers: [registry] })
  new Gauge({ name: 'in_flight', help: 'in flight', registers: [registry], aggregator: 'max' }).set(inFlight)
  const latency = new Histogram({ name: 'latency_seconds', help: 'latency', buckets: [0.1, 1], registers: [registry] })
  for (let i = 0; i < n; i++) {
    requests.inc({ code: '200' })
    latency.observe(0.05)
  }
  return (await registry.getMetricsAsJSON()) as unknown as MetricJson[]
}

function answer(workers: MetricJson[][], retired: MetricJson[] = []): ClusterMetricsAnswer {
  return {
    workers: workers.map((metrics, i) => ({ workerId: i + 1, slot: i, pid: 100 + i, state: 'answered', metrics })),
    retired,
    own: [],
    answered: workers.length,
    timedOut: 0,
  }
}

describe('renderAnswer (prom-client merges)', () => {
  it('sums counters and histograms across workers and the retired ones; a gauge follows its aggregator', async () => {
    const { body, contentType } = await renderAnswer(answer([await workerJson(3, 2), await workerJson(4, 5)], await workerJson(10, 9)))
    expect(contentType).toMatch(/text\/plain/)
    expect(body).toMatch(/^http_requests_total\{code="200"\} 17$/m)
    expect(body).toMatch(/^latency_seconds_count 17$/m)
    expect(body).toMatch(/^latency_seconds_bucket\{le="0.1"\} 17$/m)
    expect(body).toMatch(/^in_flight 9$/m) // max, as configured (retired gauges are dropped by the primary, not here)
  })

  it('perWorker: one series per worker, labelled', async () => {
    const { body } = await renderAnswer(answer([await workerJson(1, 0), await workerJson(2, 0)], await workerJson(5, 0)), true)
    expect(body).toMatch(/^http_requests_total\{code="200",worker="1",slot="0"\} 1$/m)
    expect(body).toMatch(/^http_requests_total\{code="200",worker="2",slot="1"\} 2$/m)
    expect(body).toMatch(/^http_requests_total\{code="200",worker="retired"\} 5$/m)
  })
})

describe('options', () => {
  it('a bad option throws ShoalError naming it, what was expected and what was got', () => {
    expect(() => resolveMetricsOptions({ timeoutMs: 0 })).toThrow(
      expect.objectContaining({
        code: 'SHOAL_ERR_INVALID_OPTION',
        message: 'Expected `timeoutMs` to be an integer number of milliseconds from 1 to 60000, got `0`',
      }),
    )
    expect(() => resolveMetricsOptions({ perWorker: 'yes' })).toThrow('Expected `perWorker` to be a boolean, got `"yes"`')
    expect(() => resolveMetricsOptions({ registry: {} })).toThrow('Expected `registry` to be a prom-client Registry, got `{}`')
    expect(() => resolveMetricsOptions({ timeoutMS: 5 })).toThrow(
      /Expected `timeoutMS` to be a known option \(registry, timeoutMs, perWorker\)/,
    )
    expect(() => resolveMetricsOptions(5)).toThrow('Expected `options` to be an object, got `5`')
    expect(resolveMetricsOptions()).toMatchObject({ timeoutMs: 1500, perWorker: false })
  })
})

describe('without a primary', () => {
  it('scrape() returns this process’s registry', async () => {
    const registry = new Registry()
    new Counter({ name: 'solo_total', help: 'solo', registers: [registry] }).inc(3)
    const { body } = await createClusterMetrics({ registry }).scrape()
    expect(body).toMatch(/^solo_total 3$/m)
  })
})

describe('Fastify plugin', () => {
  it('serves this process’s registry without a primary; a typo or a bad path fails registration, named', async () => {
    const { default: Fastify } = await import('fastify')
    const { clusterMetricsPlugin } = await import('./fastify.js')
    const registry = new Registry()
    new Counter({ name: 'plugin_total', help: 'plugin', registers: [registry] }).inc(2)
    const app = Fastify()
    await app.register(clusterMetricsPlugin, { registry, path: '/m', prefix: '/internal' } as never)
    const reply = await app.inject('/internal/m')
    expect(reply.statusCode).toBe(200)
    expect(reply.body).toMatch(/^plugin_total 2$/m)
    await app.close()
    await expect(
      Fastify()
        .register(clusterMetricsPlugin, { timeoutMS: 5 } as never)
        .ready(),
    ).rejects.toThrow(/Expected `timeoutMS` to be a known option/)
    await expect(Fastify().register(clusterMetricsPlugin, { path: 'metrics' }).ready()).rejects.toMatchObject({
      code: 'SHOAL_ERR_INVALID_OPTION',
      message: "Expected `path` to be a path starting with '/', got `metrics`",
    })
  })
})

describe('primaryMetricsServer', () => {
  it('validates its options by name and serves the rendered answer on its path', async () => {
    const fake = { collectMetrics: async () => answer([await workerJson(2, 0), await workerJson(3, 0)]), once: () => {} } as never
    await expect(primaryMetricsServer(fake, { port: -1 })).rejects.toThrow('Expected `port` to be an integer from 0 to 65535, got `-1`')
    await expect(primaryMetricsServer(fake, { port: 0, path: 'x' })).rejects.toThrow(
      'Expected `path` to be a path starting with \'/\', got `"x"`',
    )
    await expect(primaryMetricsServer(fake, { port: 0, timeoutMs: 1.5 })).rejects.toMatchObject({ code: 'SHOAL_ERR_INVALID_OPTION' })
    const server = await primaryMetricsServer(fake, { port: 0, host: '127.0.0.1' })
    try {
      const { port } = server.address() as { port: number }
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
      expect(text).toMatch(/^http_requests_total\{code="200"\} 5$/m)
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404)
    } finally {
      server.close()
    }
  })
})
