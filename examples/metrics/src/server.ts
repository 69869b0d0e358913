// Cluster-wide Prometheus metrics on Express: one /metrics on the app's port, whichever worker
// answers it, with every worker's counts summed and kept across restarts and reloads.
//   PORT=3000 WORKERS=auto node dist/server.js
//   curl localhost:3000/ ; curl localhost:3000/metrics
import { clustered, clusteredListen } from '@shoal/express'
import { clusterMetrics } from '@shoal/metrics'
import express from 'express'
import { Counter, collectDefaultMetrics, Histogram } from 'prom-client'

collectDefaultMetrics()
const requests = new Counter({ name: 'http_requests_total', help: 'Requests served.', labelNames: ['route', 'code'] })
const duration = new Histogram({ name: 'http_request_duration_seconds', help: 'Request duration.', labelNames: ['route'] })

const app = express()
app.use(clustered())
app.use((req, res, next) => {
  if (req.path === '/metrics') return next()
  const end = duration.startTimer({ route: req.path })
  res.once('finish', () => {
    requests.inc({ route: req.path, code: String(res.statusCode) })
    end()
  })
  next()
})

app.get('/', (req, res) => {
  res.json({ pid: process.pid, worker: req.cluster.workerId })
})
app.get('/metrics', clusterMetrics({ timeoutMs: 1000 }))

const port = Number(process.env.PORT ?? 3000)
const workers = process.env.WORKERS === undefined || process.env.WORKERS === 'auto' ? 'auto' : Number(process.env.WORKERS)

const handle = await clusteredListen(app, { port, host: process.env.HOST ?? '0.0.0.0' }, { workers })
if (handle.role === 'primary') {
  const { workers: running } = handle.status()
  const url = running[0]?.address?.replace('0.0.0.0', 'localhost')
  console.log(`shoal demo (metrics): ${running.length} workers on ${url} — curl ${url}/metrics ; Ctrl+C stops them`)
}
