// A shoal primary (core API) with WORKERS workers from metrics-worker.mjs, plus the second server
// prom-client's AggregatorRegistry needs in the primary. Its hook server (a port of its own):
//   GET /cpu          this process's CPU time so far (process.cpuUsage, µs)
//   GET /prom-client  prom-client's AggregatorRegistry.clusterMetrics() (its documented cluster setup)
//   GET /block?ms=&not=<pid>  blocks one worker (not that pid) for ms; answers its pid
// Also shoal's own metrics port in the primary (primaryMetricsServer). Prints one JSON line
// { address, hook, primaryPort } once ready. Env: WORKERS, SHOAL_METRICS_TIMEOUT_MS.
import cluster from 'node:cluster'
import { createServer } from 'node:http'
import { createPrimary } from '@shoal/core'
// Loaded in the primary, as the README says for a runCluster primary: the primary merges each scrape.
import { primaryMetricsServer } from '@shoal/metrics'
import client from 'prom-client'
import { HOST, say } from './common.mjs'

const primary = createPrimary({
  exec: new URL('./metrics-worker.mjs', import.meta.url),
  workers: Number(process.env.WORKERS ?? 2),
  logger: 'silent',
  signals: false,
  readyTimeoutMs: 180_000,
})
const aggregator = new client.AggregatorRegistry()
await primary.start()
// shoal's optional metrics port in the primary (the same collect; no worker takes the scrape).
const own = await primaryMetricsServer(primary, { port: 0, host: HOST, timeoutMs: Number(process.env.SHOAL_METRICS_TIMEOUT_MS ?? 1500) })

const hook = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://x')
  switch (url.pathname) {
    case '/cpu': {
      const { user, system } = process.cpuUsage()
      res.end(JSON.stringify({ micros: user + system }))
      return
    }
    case '/prom-client':
      try {
        const text = await aggregator.clusterMetrics()
        res.setHeader('content-type', aggregator.contentType)
        res.end(text)
      } catch (err) {
        res.statusCode = 500
        res.end(String(err))
      }
      return
    case '/block': {
      const not = Number(url.searchParams.get('not'))
      const worker = Object.values(cluster.workers ?? {}).find((w) => w?.process.pid !== not)
      worker?.send({ app: 'block', ms: Number(url.searchParams.get('ms') ?? 3000) })
      res.end(String(worker?.process.pid))
      return
    }
    default:
      res.statusCode = 404
      res.end()
  }
})
hook.listen(0, HOST, () => {
  const { port } = hook.address()
  say({
    address: primary.status().workers[0]?.address,
    hook: `http://${HOST}:${port}`,
    primaryPort: `http://${HOST}:${own.address().port}`,
  })
})
