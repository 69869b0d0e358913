// The seed example on Express: one file, run in the primary and in every worker.
//   PORT=3000 WORKERS=auto node dist/server.js
import { clustered, clusteredListen } from '@shoal/express'
import express from 'express'
import { countUsers } from './db.js'

declare module '@shoal/core' {
  interface SharedValues {
    usersCount: number
  }
}

const app = express()
app.use(clustered())

app.get('/', (req, res) => {
  res.json({ pid: process.pid, worker: req.cluster.workerId, usersCount: req.cluster.shared.usersCount })
})

const port = Number(process.env.PORT ?? 3000)
const workers = process.env.WORKERS === undefined || process.env.WORKERS === 'auto' ? 'auto' : Number(process.env.WORKERS)

const handle = await clusteredListen(
  app,
  { port, host: process.env.HOST ?? '0.0.0.0' },
  {
    workers,
    shared: { usersCount: { everyMs: 10_000, compute: countUsers } },
  },
)
if (handle.role === 'primary') {
  const { workers: running } = handle.status()
  const url = running[0]?.address?.replace('0.0.0.0', 'localhost')
  console.log(`shoal demo (express): ${running.length} workers on ${url} — curl ${url}/ ; Ctrl+C stops them`)
}
