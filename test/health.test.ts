// Health supervision and production readiness: stuck workers, memory ceiling, readiness routes.
import http from 'node:http'
import { describe, expect, it } from 'vitest'
import { Fixture, isAlive, sleep } from './helpers/fixture.js'
import { get, hammer } from './helpers/http.js'

async function start(fixture: string, env: Record<string, string> = {}, opts: Record<string, unknown> = {}) {
  const f = new Fixture(fixture, { WORKERS: '2', FIXTURE_OPTS: JSON.stringify(opts), ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; slot: number; address: string }[] }
  return { f, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

describe('heartbeat', () => {
  it('replaces a worker stuck in a busy loop; requests keep succeeding on the others', async () => {
    const { f, address, pids } = await start('core-primary.mjs', {}, { heartbeat: { intervalMs: 200, maxMissed: 5 } })
    void get(`${address}/spin?ms=600000`, false, 30_000).catch(() => {})
    await f.waitForOutput(/worker stuck: event loop silent for \d+ ms/)
    const stuck = await f.event('exit', (e) => pids.includes(e.pid as number))
    expect(stuck).toMatchObject({ signal: 'SIGKILL', planned: true })
    await f.event('ready', (e) => !pids.includes(e.pid as number))
    const statuses: number[] = []
    for (let i = 0; i < 20; i++) statuses.push((await get(`${address}/`)).status)
    expect(statuses.every((s) => s === 200)).toBe(true)
    expect(isAlive(stuck.pid as number)).toBe(false)
    const status = (await f.call('status')).status as { workers: { loopDelayMs?: number; rssBytes?: number }[] }
    expect(status.workers).toHaveLength(2)
  })

  it('reports event-loop delay and memory per worker in status()', async () => {
    const { f } = await start('core-primary.mjs', {}, { heartbeat: { intervalMs: 100, maxMissed: 50 } })
    await sleep(600)
    const { workers } = (await f.call('status')).status as { workers: { loopDelayMs: number; rssBytes: number }[] }
    expect(workers).toHaveLength(2)
    for (const w of workers) {
      expect(w.rssBytes).toBeGreaterThan(10 * 1024 * 1024)
      expect(typeof w.loopDelayMs).toBe('number')
    }
  })
})

describe('memory ceiling', () => {
  it('replaces a growing worker gracefully: no failed requests', async () => {
    const { f, address, pids } = await start('core-primary.mjs', {}, { maxMemoryMb: 200, heartbeat: { intervalMs: 100, maxMissed: 50 } })
    const client = hammer(`${address}/`, { sockets: 4, maxMs: 30_000 })
    await f.waitUntil(() => (client.result.sent > 50 ? true : undefined), 'traffic')
    const grown = (await get(`${address}/grow?mb=250`)).json<{ pid: number }>().pid
    await f.waitForOutput(/over maxMemoryMb/)
    const exit = await f.event('exit', (e) => e.pid === grown)
    expect(exit).toMatchObject({ code: 0, planned: true }) // drained, not killed
    const fresh = await f.event('ready', (e) => !pids.includes(e.pid as number))
    const sent = client.result.sent
    await f.waitUntil(() => (client.result.sent > sent + 50 ? true : undefined), 'traffic after replace')
    const result = await client.stop()
    expect(result.errors).toEqual([])
    expect(Object.keys(result.statuses)).toEqual(['200'])
    expect(isAlive(grown)).toBe(false)
    expect(fresh.slot).toBe(exit.slot)
  })
})

describe.each(['express-app.mjs', 'fastify-app.mjs'])('readiness through %s', (fixture) => {
  it('turns 503 with Retry-After as the worker drains, while the in-flight request completes', async () => {
    const { f, address } = await start(fixture, { WORKERS: '0' }, { idleSocketGraceMs: 2000 })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 })
    const warm = await Promise.all([get(`${address}/ready`, agent), get(`${address}/slow?ms=50`, agent)])
    expect(warm.map((r) => r.status)).toEqual([200, 200])
    const slow = get(`${address}/slow?ms=1500`, agent)
    await sleep(100)
    f.signal('SIGTERM')
    await sleep(100)
    const ready = await get(`${address}/ready`, agent)
    expect(ready.reusedSocket).toBe(true)
    expect(ready.status).toBe(503)
    expect(ready.headers['retry-after']).toBe('5')
    expect(ready.json()).toMatchObject({ status: 'draining' })
    expect((await slow).status).toBe(200)
    expect((await f.waitForExit()).code).toBe(0)
    agent.destroy()
  })

  it('readinessDelayMs keeps accepting for its delay: readiness 503, liveness and routes 200', async () => {
    const { f, address, pids } = await start(fixture, {}, { readinessDelayMs: 3000 })
    expect((await get(`${address}/ready`)).status).toBe(200)
    const t0 = Date.now()
    f.signal('SIGTERM')
    await f.waitForOutput(/readiness is 503/)
    await sleep(200)
    const during = await Promise.all([get(`${address}/ready`), get(`${address}/live`), get(`${address}/`), get(`${address}/`)])
    expect(Date.now() - t0).toBeLessThan(3000) // still inside the delay: the listeners were open
    expect(during.map((r) => r.status)).toEqual([503, 200, 200, 200])
    expect(during[0]?.json()).toMatchObject({ status: 'not-ready' })
    expect((await f.waitForExit()).code).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(3000)
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
  })
})
