// What breaks the day an app is clustered, done once per cluster: a scheduled job that runs once
// (not once per worker), and a rate limit that counts across workers.
//   PORT=3000 WORKERS=auto node dist/server.js
import { ClusterMemoryStorePrimary, ClusterMemoryStoreWorker } from '@express-rate-limit/cluster-memory-store'
import { supervised } from '@shoal/core'
import { clusteredListen } from '@shoal/express'
import express from 'express'
import { rateLimit } from 'express-rate-limit'

const app = express()
// 10 requests per minute per client, counted in the primary (one process: the default memory store).
app.use(rateLimit({ windowMs: 60_000, limit: 10, ...(supervised && { store: new ClusterMemoryStoreWorker() }) }))
app.get('/', (_req, res) => {
  res.json({ pid: process.pid })
})

let sessions = 0
const workers = process.env.WORKERS === undefined || process.env.WORKERS === 'auto' ? 'auto' : Number(process.env.WORKERS)

const handle = await clusteredListen(
  app,
  { port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '0.0.0.0' },
  {
    workers,
    // The store's primary half, started in the primary before the first worker forks.
    onPrimary: () => new ClusterMemoryStorePrimary().init(),
    jobs: {
      purgeSessions: { everyMs: 1000, run: () => console.log(`purged ${sessions++ % 3} expired sessions (pid ${process.pid})`) },
      nightlyReport: { cron: '0 3 * * *', run: () => console.log('nightly report sent') },
    },
  },
)
if (handle.role === 'primary') {
  const url = handle.status().workers[0]?.address?.replace('0.0.0.0', 'localhost')
  console.log(`shoal once-per-cluster: ${handle.status().workers.length} workers on ${url} — curl it 11 times; Ctrl+C stops it`)
}
