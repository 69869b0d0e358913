// The supervisor and the worker drain, through real primaries, workers, sockets and signals.
import { describe, expect, it } from 'vitest'
import { Fixture, isAlive, sleep } from './helpers/fixture.js'
import { answerFromEach, get, hammer } from './helpers/http.js'

async function startCluster(env: Record<string, string> = {}, opts: Record<string, unknown> = {}) {
  const f = new Fixture('core-primary.mjs', { WORKERS: '2', FIXTURE_OPTS: JSON.stringify({ logger: 'text', ...opts }), ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; slot: number; address: string }[] }
  const address = status.workers[0]?.address ?? ''
  return { f, status, address, pids: status.workers.map((w) => w.pid) }
}

describe('supervisor', () => {
  it('forks the target count, and every worker serves', async () => {
    const { status, address } = await startCluster()
    expect(status.workers.map((w) => w.slot)).toEqual([0, 1])
    const pids = new Set<number>()
    for (const reply of (await answerFromEach(address, status.workers.length)).values()) pids.add(reply.json<{ pid: number }>().pid)
    expect(pids).toEqual(new Set(status.workers.map((w) => w.pid)))
  })

  it('replaces a SIGKILLed worker in the same slot, and the replacement serves', async () => {
    const { f, status, address } = await startCluster()
    const victim = status.workers[0] as { pid: number; slot: number }
    process.kill(victim.pid, 'SIGKILL')
    const exit = await f.event('exit', (e) => e.pid === victim.pid)
    expect(exit).toMatchObject({ signal: 'SIGKILL', planned: false })
    expect(await f.event('restart-scheduled')).toMatchObject({ slot: victim.slot, delayMs: 0 })
    const ready = await f.event('ready', (e) => e.slot === victim.slot && e.pid !== victim.pid)
    const seen = new Set<number>()
    for (let i = 0; i < 20; i++) seen.add((await get(`${address}/`)).json<{ pid: number }>().pid)
    expect(seen.has(ready.pid as number)).toBe(true)
    expect(seen.has(victim.pid)).toBe(false)
    expect(isAlive(victim.pid)).toBe(false)
  })

  it('stops a boot-crash loop: bounded forks, the error shown, primary exits 1', async () => {
    const f = new Fixture('core-primary.mjs', {
      WORKERS: '2',
      BOOT_FAIL: 'throw',
      FIXTURE_OPTS: JSON.stringify({ restartBackoff: { minMs: 20 }, crashLoop: { maxCrashes: 10, windowMs: 60_000 } }),
    })
    const { code } = await f.waitForExit(30_000)
    expect(code).toBe(1)
    expect(f.stderr).toContain('boom at boot')
    expect(f.stderr).toMatch(/crash loop/)
    // Each boot crash weighs 2, so the breaker trips at the 5th: never a fork bomb.
    expect(f.count('fork')).toBeLessThanOrEqual(6)
    expect(f.count('crash-loop')).toBe(1)
    for (const e of f.events.filter((e) => e.ev === 'fork')) expect(isAlive(e.pid as number)).toBe(false)
  })

  it('backs off exponentially between restarts of a crashing slot', async () => {
    const { f, address } = await startCluster({}, { restartBackoff: { minMs: 100, maxMs: 400 }, crashLoop: { maxCrashes: 50 } })
    for (let i = 0; i < 4; i++) {
      await get(`${address}/exit`).catch(() => {})
      await f.event('restart-scheduled', () => true, i + 1)
      await f.event('ready', () => true, 3 + i)
    }
    // Round-robin picks the slot, so compare per slot: each slot's delays are 0, then 100 doubling.
    const bySlot = new Map<number, number[]>()
    for (const e of f.events.filter((e) => e.ev === 'restart-scheduled')) {
      bySlot.set(e.slot as number, [...(bySlot.get(e.slot as number) ?? []), e.delayMs as number])
    }
    for (const delays of bySlot.values()) expect(delays).toEqual([0, 100, 200, 400].slice(0, delays.length))
    // 4 crashes over 2 slots: some slot crashed twice in a row, so a non-zero delay was really applied.
    expect(Math.max(...[...bySlot.values()].map((d) => d.length))).toBeGreaterThanOrEqual(2)
  })
})

describe('drain', () => {
  it('a keep-alive client hammering a worker that drains gets only 200s, then moves on', async () => {
    const { f, address } = await startCluster({}, { idleSocketGraceMs: 500 })
    const client = hammer(`${address}/`, { maxMs: 20_000 })
    await f.waitUntil(() => (client.result.sent > 50 ? true : undefined), 'traffic')
    const target = [...client.result.pids][0] as number
    process.kill(target, 'SIGTERM') // drain this worker only
    await f.event('exit', (e) => e.pid === target)
    await f.event('ready', () => true, 3) // its replacement
    const sentAtExit = client.result.sent
    await f.waitUntil(() => (client.result.sent > sentAtExit + 50 ? true : undefined), 'traffic after drain')
    const result = await client.stop()
    expect(result.errors).toEqual([])
    expect(Object.keys(result.statuses)).toEqual(['200'])
    expect(result.closeHeaders).toBeGreaterThanOrEqual(1)
    expect(result.pids.size).toBeGreaterThanOrEqual(2)
    const exit = f.events.find((e) => e.ev === 'exit' && e.pid === target)
    expect(exit).toMatchObject({ code: 0, planned: true })
  })

  it('Ctrl+C with a slow request in flight: it completes with 200 and every process exits 0', async () => {
    const { f, address, pids } = await startCluster()
    const slow = get(`${address}/slow?ms=1500`)
    await sleep(300)
    f.signalGroup('SIGINT') // the terminal hits the whole process group
    const reply = await slow
    expect(reply.status).toBe(200)
    expect(reply.headers.connection).toBe('close')
    const { code } = await f.waitForExit()
    expect(code).toBe(0)
    for (const e of f.events.filter((e) => e.ev === 'exit')) expect(e.code).toBe(0)
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
    expect(f.count('shutdown')).toBe(1)
  })

  it('a request that never ends: everything is gone shortly after the 5 s deadline', async () => {
    const { f, address, pids } = await startCluster()
    const hung = get(`${address}/hang`, false, 20_000).catch((err: NodeJS.ErrnoException) => err.code ?? err.message)
    await sleep(300)
    const t0 = Date.now()
    f.signal('SIGTERM')
    const { code } = await f.waitForExit(20_000)
    const took = Date.now() - t0
    expect(code).toBe(1) // a worker missed its deadline
    expect(took).toBeGreaterThanOrEqual(4500)
    expect(took).toBeLessThan(12_000)
    expect(await hung).toBe('ECONNRESET')
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
  })

  it('idle shutdown does not wait for the deadline', async () => {
    const { f, address, pids } = await startCluster()
    await get(`${address}/`, false)
    const t0 = Date.now()
    f.signal('SIGTERM')
    const { code } = await f.waitForExit()
    expect(code).toBe(0)
    expect(Date.now() - t0).toBeLessThan(4000) // the deadline is 5000
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
  })

  it('a second Ctrl+C exits at once, killing workers', async () => {
    const { f, address, pids } = await startCluster()
    void get(`${address}/hang`).catch(() => {})
    await sleep(200)
    f.signal('SIGINT')
    await f.waitForOutput(/shutting down/)
    f.signal('SIGINT')
    const { code } = await f.waitForExit(5000)
    expect(code).toBe(130)
    await f.waitUntil(() => (pids.every((p) => !isAlive(p)) ? true : undefined), 'workers gone', 5000, { failOnExit: false })
  })
})
