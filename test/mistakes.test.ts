// The mistakes a newcomer makes in the first hour, each with the one clear message it must get.
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Fixture, isAlive } from './helpers/fixture.js'

const blockers: net.Server[] = []
afterEach(() => {
  for (const s of blockers.splice(0)) s.close()
})

async function takenPort(): Promise<number> {
  const server = net.createServer()
  blockers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

/** A port nothing listens on (taken, then freed again). */
async function freePort(): Promise<number> {
  const port = await takenPort()
  const server = blockers.pop()
  await new Promise((resolve) => server?.close(resolve))
  return port
}

/** True while any process of the fixture's process group (the primary and its workers) is alive. */
function groupAlive(pgid: number): boolean {
  return isAlive(-pgid)
}

describe('port already in use, clustered', () => {
  it('rejects at once with SHOAL_ERR_LISTEN naming the port, after the cluster is down, and exits non-zero', async () => {
    const port = await takenPort()
    const f = new Fixture('mistakes.mjs', { MISTAKE: 'port-in-use', PORT: String(port), WORKERS: '2' })
    const rejected = await f.event('rejected', undefined, 1, 30_000)
    expect(rejected).toMatchObject({ code: 'SHOAL_ERR_LISTEN', message: `port ${port} is already in use (127.0.0.1:${port})` })
    // One worker's boot (~1 s here when the machine is idle), not a crash loop's worth: before, it
    // never settled at all. Generous: the 2-core machine runs other suites at the same time.
    expect(rejected.ms).toBeLessThan(10_000)
    expect(rejected.workersLeft).toBe(0) // rejected after the cluster it began is down
    expect(groupAlive(f.pid)).toBe(true) // the primary is still here to print the rejection...
    const exit = await f.waitForExit(10_000)
    expect(exit.code).toBe(1)
    expect(groupAlive(f.pid)).toBe(false) // ...and no worker outlives it
    expect(f.stderr).not.toMatch(/crash loop|worker crashed|restart scheduled/) // no respawn: it cannot free a port
    // One line from shoal says why; no worker prints its own stack.
    expect(f.stderr.match(/already in use/g)?.length).toBe(2) // shoal's line + Node's print of the uncaught rejection
    expect(f.stderr).not.toMatch(/could not listen/)
  })

  it('rejects at once with a readiness delay too: nothing was ready, so there is nothing to keep serving', async () => {
    const port = await takenPort()
    const f = new Fixture('mistakes.mjs', { MISTAKE: 'port-in-use', PORT: String(port), WORKERS: '2', READINESS_DELAY_MS: '20000' })
    const rejected = await f.event('rejected', undefined, 1, 30_000)
    expect(rejected).toMatchObject({ code: 'SHOAL_ERR_LISTEN', workersLeft: 0 })
    expect(rejected.ms).toBeLessThan(10_000)
  })
})

async function rejects(mistake: string, env: Record<string, string> = {}) {
  const f = new Fixture('mistakes.mjs', { MISTAKE: mistake, ...env })
  const rejected = await f.event('rejected', undefined, 1, 30_000)
  expect((await f.waitForExit(20_000)).code).toBe(1)
  return { f, rejected }
}

async function serves(mistake: string, env: Record<string, string> = {}) {
  const f = new Fixture('mistakes.mjs', { MISTAKE: mistake, ...env })
  const { address } = await f.event('listening', undefined, 1, 30_000)
  const res = await fetch(`${address}/`)
  const body = await res.text()
  f.command('stop')
  return { f, address: String(address), status: res.status, body }
}

describe('clusteredListen called twice', () => {
  it('the second call rejects, naming the first', async () => {
    const { rejected } = await rejects('twice')
    expect(rejected.code).toBe('SHOAL_ERR_ALREADY_STARTED')
    expect(rejected.message).toMatch(/already called in this process \(first at .*mistakes\.mjs:\d+:\d+\)/)
  })
})

describe('the port argument', () => {
  it('Express: a numeric string (process.env.PORT) listens on that port', async () => {
    const port = await freePort()
    const { address, status } = await serves('string-port', { PORT: String(port) })
    expect(status).toBe(200)
    expect(new URL(address).port).toBe(String(port))
  })

  it('Express: a missing port (PORT unset) is refused by name before anything forks', async () => {
    const { rejected } = await rejects('no-port')
    expect(rejected).toMatchObject({ code: 'SHOAL_ERR_INVALID_OPTION', workersLeft: 0 })
    expect(rejected.message).toMatch(/^Expected `port` to be/)
  })

  it('Fastify: clusteredListen(app, 3000) listens on that port', async () => {
    const port = await freePort()
    const { address, status, body } = await serves('fastify-number-port', { PORT: String(port) })
    expect(status).toBe(200)
    expect(JSON.parse(body)).toEqual({ workerId: expect.any(Number) })
    expect(new URL(address).port).toBe(String(port))
  })
})

describe('Express without app.use(clustered())', () => {
  it('req.cluster is defined under clusteredListen from the first request on', async () => {
    const { status, body } = await serves('no-middleware')
    expect(status).toBe(200)
    expect(JSON.parse(body).workerId).toBeGreaterThanOrEqual(1)
  })

  it('app.use(clustered) without parentheses is refused by name before anything forks', async () => {
    const { rejected } = await rejects('no-parens')
    expect(rejected).toMatchObject({ code: 'SHOAL_ERR_INVALID_OPTION', workersLeft: 0 })
    expect(rejected.message).toContain('app.use(clustered())')
  })
})

describe('logging through the app’s pino (logger: app.log)', () => {
  it('writes one "pid" key per line: pino’s own; another process’s pid is workerPid', async () => {
    const { default: Fastify } = await import('fastify')
    const { Writable } = await import('node:stream')
    const lines: string[] = []
    const stream = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const app = Fastify({ logger: { stream } })
    const { resolveOptions } = await import('@shoal/core')
    const log = resolveOptions({ logger: app.log }).logger
    log.info({ pid: process.pid, workers: 2 }, 'shutting down')
    log.info({ slot: 0, pid: 4242 }, 'worker ready')
    expect(lines).toHaveLength(2)
    for (const line of lines) expect(line.match(/"pid":/g)).toHaveLength(1)
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ pid: process.pid, workers: 2, msg: 'shutting down' })
    expect(JSON.parse(lines[1] ?? '')).toMatchObject({ pid: process.pid, workerPid: 4242, slot: 0, msg: 'worker ready' })
    await app.close()
  })
})

describe('app.use(clustered) with a plain app.listen()', () => {
  it('each request fails with the message saying how to use it (500), never hangs', async () => {
    const { default: express } = await import('express')
    const { clustered } = await import('@shoal/express')
    const errors: unknown[] = []
    const app = express()
    app.use(clustered as never)
    app.get('/', (_req, res) => {
      res.send('ok')
    })
    app.use((err: unknown, _req: unknown, res: { status(n: number): { end(): void } }, _next: unknown) => {
      errors.push(err)
      res.status(500).end()
    })
    const server = app.listen(0, '127.0.0.1')
    await new Promise((resolve) => server.once('listening', resolve))
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`, { signal: AbortSignal.timeout(5000) })
      expect(res.status).toBe(500)
      expect(errors[0]).toMatchObject({ code: 'SHOAL_ERR_INVALID_OPTION', message: expect.stringContaining('app.use(clustered())') })
    } finally {
      server.close()
    }
  })
})
