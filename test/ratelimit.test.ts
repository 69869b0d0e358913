// Rate limits that count across workers, and the onPrimary hook that starts a store's primary half.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get, type Pin, pinWorkers } from './helpers/http.js'

async function start(fixture: string, env: Record<string, string> = {}) {
  const f = new Fixture(fixture, { WORKERS: '2', ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; address: string }[] }
  return { f, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

describe.each(['ratelimit-express.mjs', 'ratelimit-fastify.mjs'])('a limit of 10 per minute through %s', (fixture) => {
  it('the 11th request from one client is 429, whichever worker it reaches', async () => {
    const { address, pids } = await start(fixture)
    // One connection on each worker (finding them took one counted request each); then requests take
    // turns over them: each worker alone would allow 10.
    const pins = await pinWorkers(address, 2)
    expect(new Set(pins.map((p) => p.pid))).toEqual(new Set(pids))
    const replies = []
    for (let i = 0; i < 14; i++) {
      const pin = pins[i % 2] as Pin
      const r = await get(`${address}/`, pin.agent)
      replies.push({ status: r.status, pid: Number(r.headers['x-pid']) })
    }
    for (const p of pins) p.agent.destroy()
    expect(replies.slice(0, 8).map((r) => r.status)).toEqual(Array(8).fill(200))
    expect(replies.slice(8).map((r) => r.status)).toEqual(Array(6).fill(429))
    // Both workers answered 429 (and both served before): the count is the cluster's, not a worker's.
    expect(new Set(replies.slice(8).map((r) => r.pid))).toEqual(new Set(pids))
    expect(new Set(replies.slice(0, 8).map((r) => r.pid))).toEqual(new Set(pids))
  })
})

describe('onPrimary', () => {
  it('runs once in the primary, awaited, before the first fork, and sees every fork', async () => {
    const { f, pids } = await start('ratelimit-express.mjs')
    expect(f.events.filter((e) => e.ev === 'on-primary')).toEqual([{ ev: 'on-primary', forked: 0 }])
    expect(new Set(f.events.filter((e) => e.ev === 'hook-saw-fork').map((e) => e.pid))).toEqual(new Set(pids))
  })

  it('a hook that throws fails start with a clear error, and nothing is forked', async () => {
    const f = new Fixture('ratelimit-express.mjs', { WORKERS: '2', ON_PRIMARY: 'throw' })
    const { code } = await f.waitForExit()
    expect(code).toBe(1)
    expect(f.stderr).toMatch(/SHOAL_ERR_ON_PRIMARY_FAILED/)
    expect(f.stderr).toMatch(/onPrimary failed, no worker was started: the store could not start/)
    expect(f.count('hook-saw-fork')).toBe(0)
  })
})
