// A shoal cluster through the adapters' clusteredListen: this file is the primary and every worker.
// The primary prints the address and its lifecycle events. Env: FRAMEWORK, WORKERS, PORT (default 0),
// BALANCING (the `balancing` option; shoal's default when unset).
import { clusteredListenFor, createApp } from './app.mjs'
import { HOST, say } from './common.mjs'

const framework = process.env.FRAMEWORK ?? 'express'
const workers = Number(process.env.WORKERS ?? 2)
const port = Number(process.env.PORT ?? 0)
const app = await createApp(framework, { adapter: true })
const clusteredListen = await clusteredListenFor(framework)

const handle = await clusteredListen(
  app,
  { port, host: HOST },
  {
    workers,
    logger: 'silent',
    ...(process.env.BALANCING && { balancing: process.env.BALANCING }),
  },
)
if (handle.role === 'primary') {
  for (const ev of ['ready', 'reload-start', 'reload-progress', 'reload-done', 'reload-failed', 'exit']) {
    handle.on(ev, (data) => say({ ev, t: Date.now(), ...data }))
  }
  const status = handle.status()
  say({ address: status.workers[0].address, pid: process.pid, workers: status.workers.length, balancing: status.balancing })
}
