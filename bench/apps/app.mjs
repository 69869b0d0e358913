// The benchmarked app, identical in every mode: GET / (hello world) and GET /cpu (fib(CPU_FIB)).
// `adapter` registers shoal's clustered() / clusterPlugin, as a user of shoal would. Imports are
// dynamic so a process loads only its framework, and shoal only when it uses it.
import { CPU_FIB, fib } from './common.mjs'

export async function createApp(framework, { adapter }) {
  if (framework === 'express') {
    const { default: express } = await import('express')
    const app = express()
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
    return app
  }
  if (framework === 'fastify') {
    const { default: Fastify } = await import('fastify')
    const app = Fastify({ logger: false })
    if (adapter) {
      const { clusterPlugin } = await import('@shoal/fastify')
      await app.register(clusterPlugin)
    }
    app.get('/', async () => ({ hello: 'world' }))
    app.get('/cpu', async () => ({ fib: fib(CPU_FIB) }))
    return app
  }
  throw new Error(`FRAMEWORK must be express or fastify, got ${framework}`)
}

/** `clusteredListen` of the framework's adapter. */
export async function clusteredListenFor(framework) {
  const mod = framework === 'express' ? await import('@shoal/express') : await import('@shoal/fastify')
  return mod.clusteredListen
}
