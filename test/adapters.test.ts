// Both adapters through their clusteredListen, in real processes: the README's one-file shape.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { Fixture, isAlive, sleep } from './helpers/fixture.js'
import { answerFromEach, get, hammer } from './helpers/http.js'

async function start(fixture: string, env: Record<string, string> = {}) {
  const f = new Fixture(fixture, { WORKERS: '2', ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; slot: number; address: string }[] }
  return { f, status, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

describe.each(['express-app.mjs', 'fastify-app.mjs'])('%s', (fixture) => {
  it('spreads requests over the workers and exposes one context per worker', async () => {
    const { address, pids } = await start(fixture)
    const seen = new Set<number>()
    for (const reply of (await answerFromEach(address, pids.length, '/ctx')).values()) {
      const ctx = reply.json<{ own: boolean; same: boolean; workerId: number; pid: number }>()
      expect(ctx).toMatchObject({ own: false, same: true })
      expect(ctx.workerId).toBeGreaterThanOrEqual(1)
      seen.add(ctx.pid)
    }
    expect(seen).toEqual(new Set(pids))
  })

  it('replaces a crashed worker', async () => {
    const { f, address, pids } = await start(fixture)
    await get(`${address}/exit`).catch(() => {})
    const exit = await f.event('exit')
    expect(exit.code).toBe(1)
    const fresh = await f.event('ready', (e) => !pids.includes(e.pid as number))
    const seen = new Set<number>()
    for (let i = 0; i < 20; i++) seen.add((await get(`${address}/`)).json<{ pid: number }>().pid)
    expect(seen.has(fresh.pid as number)).toBe(true)
  })

  it('Ctrl+C with a slow request in flight: 200, cleanup after it, every process exits 0', async () => {
    const { f, address, pids } = await start(fixture)
    const slow = get(`${address}/slow?ms=1500`)
    await sleep(300)
    f.signalGroup('SIGINT')
    const reply = await slow
    expect(reply.status).toBe(200)
    const { code } = await f.waitForExit()
    expect(code).toBe(0)
    const cleanups = f.events.filter((e) => e.ev === 'cleanup')
    expect(cleanups.map((e) => e.pid).sort()).toEqual([...pids].sort())
    for (const c of cleanups) expect(c.active).toBe(0) // cleanup ran after in-flight requests finished
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
  })

  it('a hung request: forced exit after the 5 s deadline', async () => {
    const { f, address, pids } = await start(fixture)
    const hung = get(`${address}/hang`, false, 20_000).catch((err: NodeJS.ErrnoException) => err.code)
    await sleep(300)
    const t0 = Date.now()
    f.signalGroup('SIGINT')
    const { code } = await f.waitForExit(20_000)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4500)
    expect(code).toBe(1)
    expect(await hung).toBe('ECONNRESET')
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
  })

  it('keep-alive clients during shutdown: no in-flight request is reset', async () => {
    const { f, address } = await start(fixture)
    const client = hammer(`${address}/`, { sockets: 4, maxMs: 20_000 })
    await f.waitUntil(() => (client.result.sent > 200 ? true : undefined), 'traffic')
    f.signalGroup('SIGINT')
    await f.waitForExit()
    const result = await client.stop()
    expect(result.statuses[200]).toBeGreaterThan(200)
    expect(Object.keys(result.statuses)).toEqual(['200'])
    // Once every worker stopped listening, a new connection fails (refused, or reset when the primary had
    // already accepted it). A request on a socket that had already served one must never fail.
    expect(result.errors.filter((e) => !e.endsWith('on a new socket'))).toEqual([])
  })

  it('runs unclustered with workers: 0 and drains the same way on SIGINT', async () => {
    const { f, address } = await start(fixture, { WORKERS: '0' })
    const ctx = (await get(`${address}/ctx`)).json<{ workerId: number; pid: number }>()
    expect(ctx).toMatchObject({ workerId: 0, pid: f.pid })
    const slow = get(`${address}/slow?ms=1000`)
    await sleep(200)
    f.signal('SIGINT')
    expect((await slow).status).toBe(200)
    expect((await f.waitForExit()).code).toBe(0)
    expect(f.events.find((e) => e.ev === 'cleanup')).toMatchObject({ active: 0 })
  })

  it('a port in use: a clear SHOAL_ERR_LISTEN, in one process and in a cluster (no crash loop), never a silent crash', async () => {
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = String((blocker.address() as net.AddressInfo).port)
    try {
      const single = new Fixture(fixture, { WORKERS: '0', PORT: port })
      expect((await single.waitForExit()).code).not.toBe(0)
      expect(single.stderr).toContain(`ShoalError: port ${port} is already in use`)

      const clustered = new Fixture(fixture, { WORKERS: '2', PORT: port, FIXTURE_OPTS: JSON.stringify({ restartBackoff: { minMs: 10 } }) })
      expect((await clustered.waitForExit()).code).toBe(1)
      expect(clustered.stderr).toContain(`port ${port} is already in use`)
      expect(clustered.stderr).not.toMatch(/crash loop/)
    } finally {
      blocker.close()
    }
  })
})
