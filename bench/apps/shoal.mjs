// A shoal cluster through the adapters' clusteredListen: this file is the primary and every worker.
// The primary prints the address and its reload events. Env: FRAMEWORK, WORKERS, PORT (default 0).
import { clusteredListen as expressListen } from '@shoal/express'
import { clusteredListen as fastifyListen } from '@shoal/fastify'
import { HOST } from '../lib.mjs'
import { createApp, say } from './app.mjs'

const framework = process.env.FRAMEWORK ?? 'express'
const workers = Number(process.env.WORKERS ?? 2)
const port = Number(process.env.PORT ?? 0)
const app = await createApp(framework, { adapter: true })
const listen = framework === 'express' ? expressListen : fastifyListen

const handle = await listen(app, { port, host: HOST }, { workers, logger: 'silent' })
if (handle.role === 'primary') {
  for (const ev of ['reload-start', 'reload-done', 'reload-failed', 'exit']) {
    handle.on(ev, (data) => say({ ev, t: Date.now(), ...data }))
  }
  say({ address: handle.status().workers[0].address, pid: process.pid, workers: handle.status().workers.length })
}
