// A shoal worker with ~1,000 prom-client series, serving one cluster-wide /metrics (@shoal/metrics)
// and answering prom-client's own AggregatorRegistry in the primary too, so both are measured on the
// same workers. `{ app: 'block', ms }` from the primary blocks its event loop for `ms`.
import { createServer } from 'node:http'
import { serve } from '@shoal/core'
import { createClusterMetrics } from '@shoal/metrics'
import client from 'prom-client'
import { HOST } from './common.mjs'

new client.AggregatorRegistry() // prom-client's worker half: answers the primary's clusterMetrics()

const routes = Array.from({ length: 20 }, (_, i) => `/route/${i}`)
const codes = ['200', '201', '304', '404', '500']
// 5 counters × 20 routes × 5 codes = 500 series
for (let c = 0; c < 5; c++) {
  const counter = new client.Counter({ name: `bench_events_${c}_total`, help: `Counter ${c}.`, labelNames: ['route', 'code'] })
  for (const route of routes) for (const code of codes) counter.inc({ route, code }, 1 + Math.floor(Math.random() * 100))
}
// 1 histogram × 20 routes × (11 buckets + +Inf + sum + count) = 280 series
const histogram = new client.Histogram({ name: 'bench_duration_seconds', help: 'Durations.', labelNames: ['route'] })
for (const route of routes) for (let i = 0; i < 20; i++) histogram.observe({ route }, Math.random())
// 2 gauges × 110 = 220 series
for (let g = 0; g < 2; g++) {
  const gauge = new client.Gauge({ name: `bench_level_${g}`, help: `Gauge ${g}.`, labelNames: ['item'] })
  for (let i = 0; i < 110; i++) gauge.set({ item: String(i) }, Math.random() * 100)
}

const metrics = createClusterMetrics({ timeoutMs: Number(process.env.SHOAL_METRICS_TIMEOUT_MS ?? 1500) })

process.on('message', (message) => {
  if (message?.app !== 'block') return
  const until = Date.now() + message.ms
  while (Date.now() < until) {}
})

await serve(
  createServer(async (req, res) => {
    res.setHeader('x-pid', String(process.pid))
    if (req.url === '/metrics') {
      try {
        const { contentType, body } = await metrics.scrape()
        res.setHeader('content-type', contentType)
        res.end(body)
      } catch (err) {
        res.statusCode = 503
        res.end(String(err))
      }
      return
    }
    res.end(String(process.pid))
  }),
  { port: 0, host: HOST },
  { logger: 'silent' },
)
