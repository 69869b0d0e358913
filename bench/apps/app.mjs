// The benchmarked app, identical in every mode: GET / (hello world), GET /cpu (fib(CPU_FIB)) and
// GET /slow (answers after the `ms` query parameter, 1000 ms by default: a request to drain).
// `adapter` registers shoal's clustered() / clusterPlugin, as a user of shoal would. Imports are
// dynamic so a process loads only its framework, and shoal only when it uses it.
import { CPU_FIB, fib, sleep } from './common.mjs'

const SLOW_MS = 1000

function slowMs(query) {
  const ms = Number(query.ms ?? SLOW_MS)
  return Number.isFinite(ms) && ms >= 0 ? ms : SLOW_MS
}

// COUNT_DIR: every process writes how many requests it served to COUNT_DIR/<pid>, five times a
// second, so the bench can see how evenly the workers were loaded (one integer add per request).
let served = 0
if (process.env.COUNT_DIR) {
  const { renameSync, writeFileSync } = await import('node:fs')
  const file = `${process.env.COUNT_DIR}/${process.pid}`
  // Write, then rename: the bench never reads a file half-written (an empty one read as 0).
  const flush = () => {
    writeFileSync(`${file}.tmp`, String(served))
    renameSync(`${file}.tmp`, file)
  }
  setInterval(flush, 200).unref()
  process.on('exit', flush)
}

export async function createApp(framework, { adapter }) {
  if (framework === 'express') {
    const { default: express } = await import('express')
    const app = express()
    if (process.env.COUNT_DIR)
      app.use((_req, _res, next) => {
        served++
        next()
      })
    if (adapter) {
      const { clustered } = await import('@shoal/express')
      app.use(clustered())
    }
    app.get('/', (_req, res) => {
      res.json({ hello: 'world' })
    })
    app.get('/cpu', (_req, res) => {
      res.json({ fib: fib(CPU_FIB) })
    })
    app.get('/slow', async (req, res) => {
      const ms = slowMs(req.query)
      await sleep(ms)
      res.json({ sleptMs: ms })
    })
    return app
  }
  if (framework === 'fastify') {
    const { default: Fastify } = await import('fastify')
    const app = Fastify({ logger: false })
    if (process.env.COUNT_DIR)
      app.addHook('onRequest', async () => {
        served++
      })
    if (adapter) {
      const { clusterPlugin } = await import('@shoal/fastify')
      await app.register(clusterPlugin)
    }
    app.get('/', async () => ({ hello: 'world' }))
    app.get('/cpu', async () => ({ fib: fib(CPU_FIB) }))
    app.get('/slow', async (req) => {
      const ms = slowMs(req.query)
      await sleep(ms)
      return { sleptMs: ms }
    })
    return app
  }
  throw new Error(`FRAMEWORK must be express or fastify, got ${framework}`)
}

/** `clusteredListen` of the framework's adapter. */
export async function clusteredListenFor(framework) {
  const mod = framework === 'express' ? await import('@shoal/express') : await import('@shoal/fastify')
  return mod.clusteredListen
}
