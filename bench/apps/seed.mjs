// The "seed pattern": a hand-written node:cluster primary, as found in many apps. Forks N workers
// (round-robin), re-forks one that dies, and on SIGUSR2 reloads the naive way: for each worker,
// disconnect() it, then fork a replacement. Env: FRAMEWORK, WORKERS, PORT (default 0).
import cluster from 'node:cluster'
import { createServer } from 'node:http'
import { createApp } from './app.mjs'
import { HOST, say } from './common.mjs'

const framework = process.env.FRAMEWORK ?? 'express'
const workers = Number(process.env.WORKERS ?? 2)
const port = Number(process.env.PORT ?? 0)

if (cluster.isPrimary) {
  cluster.schedulingPolicy = cluster.SCHED_RR
  let announced = false
  let listening = 0
  cluster.on('listening', (_worker, address) => {
    listening++
    if (!announced && listening === workers) {
      announced = true
      say({ address: `http://${HOST}:${address.port}`, pid: process.pid, workers })
    }
  })
  cluster.on('exit', (worker, code, signal) => {
    say({ ev: 'exit', t: Date.now(), pid: worker.process.pid, code, signal, planned: worker.exitedAfterDisconnect })
    if (!worker.exitedAfterDisconnect) cluster.fork()
  })
  process.on('SIGUSR2', () => {
    const started = Date.now()
    say({ ev: 'reload-start', t: started })
    const old = Object.values(cluster.workers)
    const fresh = []
    for (const worker of old) {
      worker.disconnect()
      fresh.push(cluster.fork())
    }
    const listened = Promise.all(fresh.map((w) => new Promise((resolve) => w.once('listening', resolve))))
    const gone = Promise.all(old.map((w) => new Promise((resolve) => (w.isDead() ? resolve() : w.once('exit', resolve)))))
    listened.then(() => say({ ev: 'reload-listening', t: Date.now(), durationMs: Date.now() - started }))
    Promise.all([listened, gone]).then(() => say({ ev: 'reload-done', t: Date.now(), durationMs: Date.now() - started }))
  })
  for (let i = 0; i < workers; i++) cluster.fork()
} else {
  const app = await createApp(framework, { adapter: false })
  if (framework === 'express') createServer(app).listen(port, HOST)
  else await app.listen({ port, host: HOST })
}
