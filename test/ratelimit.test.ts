// Rate limits that count across workers, and the onPrimary hook that starts a store's primary half.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

async function start(fixture: string, env: Record<string, string> = {}) {
  const f = new Fixture(fixture, { WORKERS: '2', ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; address: string }[] }
  return { f, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

describe.each(['ratelimit-express.mjs', 'ratelimit-fastify.mjs'])('a limit of 10 per minute through %s', (fixture) => {
  it('the 11th request from one client is 429, whichever worker it reaches', async () => {
    const { address, pids } = await start(fixture)
    // Fresh connections, so round-robin spreads them: each worker alone would allow 10.
    const replies = []
    for (let i = 0; i < 16; i++) {
      const r = await get(`${address}/`)
      replies.push({ status: r.status, pid: Number(r.headers['x-pid']) })
    }
    expect(replies.slice(0, 10).map((r) => r.status)).toEqual(Array(10).fill(200))
    expect(replies.slice(10).map((r) => r.status)).toEqual(Array(6).fill(429))
    // Both workers answered 429 (and both served before): the count is the cluster's, not a worker's.
    expect(new Set(replies.slice(10).map((r) => r.pid))).toEqual(new Set(pids))
    expect(new Set(replies.slice(0, 10).map((r) => r.pid))).toEqual(new Set(pids))
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
