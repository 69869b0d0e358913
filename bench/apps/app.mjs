// The benchmarked app, identical in every mode: GET / (hello world) and GET /cpu (fib(CPU_FIB)).
// `adapter` registers shoal's clustered() / clusterPlugin, as a user of shoal would.
import { clustered } from '@shoal/express'
import { clusterPlugin } from '@shoal/fastify'
import express from 'express'
import Fastify from 'fastify'
import { CPU_FIB, fib } from '../lib.mjs'

export async function createApp(framework, { adapter }) {
  if (framework === 'express') {
    const app = express()
    if (adapter) app.use(clustered())
    app.get('/', (_req, res) => {
      res.json({ hello: 'world' })
    })
    app.get('/cpu', (_req, res) => {
      res.json({ fib: fib(CPU_FIB) })
    })
    return app
  }
  if (framework === 'fastify') {
    const app = Fastify({ logger: false })
    if (adapter) await app.register(clusterPlugin)
    app.get('/', async () => ({ hello: 'world' }))
    app.get('/cpu', async () => ({ fib: fib(CPU_FIB) }))
    return app
  }
  throw new Error(`FRAMEWORK must be express or fastify, got ${framework}`)
}

/** Prints one JSON line on stdout: how a server process talks to the bench. */
export function say(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}
