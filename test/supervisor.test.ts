// The supervisor's races through real primaries and workers (issue 13, cases 1–4): the slot state
// machine's unit tests (packages/core/src/slots.test.ts) cover each race in milliseconds; these show
// the same behaviour end to end.
import { describe, expect, it } from 'vitest'
import { Fixture, isAlive, sleep } from './helpers/fixture.js'
import { get, type Reply } from './helpers/http.js'

interface Status {
  target: number
  workers: { pid: number; slot: number; state: string; address: string; generation: number }[]
}

async function start(env: Record<string, string> = {}, opts: Record<string, unknown> = {}) {
  const f = new Fixture('supervisor-primary.mjs', { WORKERS: '2', FIXTURE_OPTS: JSON.stringify(opts), ...env })
  const started = await f.event('started')
  const status = started.status as Status
  return { f, status, address: status.workers[0]?.address ?? '' }
}

const statusOf = async (f: Fixture) => (await f.call('status')).status as Status

describe('supervisor races', () => {
  it('a reload reaching a slot that waits out its crash backoff leaves one worker per slot (no orphan)', async () => {
    const { f, status } = await start({}, { restartBackoff: { minMs: 3000, maxMs: 3000 } })
    const first = status.workers.find((w) => w.slot === 0) as Status['workers'][number]
    process.kill(first.pid, 'SIGKILL') // first restart: immediate
    const second = await f.event('ready', (e) => e.slot === 0 && e.pid !== first.pid)
    process.kill(second.pid as number, 'SIGKILL') // second: waits 3 s
    await f.event('restart-scheduled', (e) => e.slot === 0 && (e.delayMs as number) === 3000)
    const reload = await f.call('reload')
    expect(reload).toMatchObject({ ok: true })
    await sleep(3500) // past the backoff: the old restart timer must not fork
    const after = await statusOf(f)
    expect(after.workers).toHaveLength(2)
    expect(after.workers.map((w) => w.slot).sort()).toEqual([0, 1])
    expect(after.workers.every((w) => w.generation === 1 && w.state === 'ready')).toBe(true)
  })

  it('a worker that blocks its event loop while draining is SIGKILLed after its deadline, and replaced', async () => {
    const { f, status, address } = await start({ WORKERS: '1' }, { shutdownTimeoutMs: 1000, heartbeat: false })
    const victim = status.workers[0] as Status['workers'][number]
    void get(`${address}/then-spin?afterMs=500`, false, 30_000).catch(() => {})
    await sleep(200)
    process.kill(victim.pid, 'SIGTERM') // it starts to drain, then its request spins for good
    const exit = await f.event('exit', (e) => e.pid === victim.pid, 1, 15_000)
    expect(exit).toMatchObject({ signal: 'SIGKILL' })
    expect(f.stderr).toMatch(/outlived its drain deadline/)
    // With port 0 the replacement may get a new port: the old listener closed before it listened.
    const fresh = await f.event('ready', (e) => e.pid !== victim.pid)
    expect((await get(`${fresh.address}/`)).status).toBe(200)
    expect(isAlive(victim.pid)).toBe(false)
  })

  it('forks that cannot spawn are failed boots: logged at error level, the breaker trips, the primary exits 1', async () => {
    const f = new Fixture('supervisor-primary.mjs', {
      WORKERS: '2',
      SPAWN_FAIL: 'start',
      FIXTURE_OPTS: JSON.stringify({ restartBackoff: { minMs: 20 } }),
    })
    const { code } = await f.waitForExit(20_000)
    expect(code).toBe(1)
    expect(f.stderr).toMatch(/could not start a worker for slot \d: spawn .* ENOENT/)
    expect(f.stderr).toMatch(/crash loop/)
    expect(f.count('spawn-error')).toBeGreaterThanOrEqual(5)
  })

  it('a reload whose new worker cannot spawn fails, and the old workers keep serving', async () => {
    const { f, address, status } = await start({ SPAWN_FAIL: 'later' })
    const reload = await f.call('reload')
    expect(reload).toMatchObject({ ok: false, code: 'SHOAL_ERR_RELOAD_FAILED' })
    expect(reload.error).toMatch(/could not be started: spawn .* ENOENT/)
    expect((await get(`${address}/`)).status).toBe(200)
    expect((await statusOf(f)).workers.map((w) => w.pid).sort()).toEqual(status.workers.map((w) => w.pid).sort())
    f.signal('SIGTERM')
    expect((await f.waitForExit()).code).toBe(0)
  })

  it('SIGTERM to the only worker: its replacement is ready before it stops accepting, so no connection is refused', async () => {
    const { f, status, address } = await start({ WORKERS: '1' })
    const victim = status.workers[0] as Status['workers'][number]
    // A new connection per request (what nginx and `ab` without -k do), back to back until stopped.
    const errors: string[] = []
    const served = new Set<number>()
    let stop = false
    const client = (async () => {
      for (let i = 0; i < 20_000 && !stop; i++) {
        const reply: Reply | string = await get(`${address}/`, false, 5000).catch((e: NodeJS.ErrnoException) => e.code ?? e.message)
        if (typeof reply === 'string') errors.push(reply)
        else served.add(reply.json<{ pid: number }>().pid)
      }
    })()
    await sleep(300)
    process.kill(victim.pid, 'SIGTERM')
    const exit = await f.event('exit', (e) => e.pid === victim.pid, 1, 30_000)
    await sleep(300)
    stop = true
    await client
    expect(errors).toEqual([])
    expect(exit).toMatchObject({ code: 0, planned: true })
    const fresh = (await statusOf(f)).workers
    expect(fresh).toHaveLength(1)
    expect(served.has(fresh[0]?.pid as number)).toBe(true)
    expect(f.count('restart-scheduled')).toBe(0)
  })

  it('an event listener that throws is logged; the primary keeps supervising (crash → replacement → serving)', async () => {
    const { f, status } = await start({ THROWING_LISTENER: '1' })
    expect(f.stderr).toMatch(/a listener for the 'ready' event threw/)
    const victim = status.workers[0] as Status['workers'][number]
    process.kill(victim.pid, 'SIGKILL')
    const fresh = await f.event('ready', (e) => e.slot === victim.slot && e.pid !== victim.pid)
    await f.waitForOutput(/a listener for the 'exit' event threw/)
    expect((await get(`${fresh.address}/`)).status).toBe(200)
    expect((await statusOf(f)).workers).toHaveLength(2)
    f.signal('SIGTERM')
    expect((await f.waitForExit()).code).toBe(0)
  })

  it('start() twice forks each slot once and installs the signal handlers once', async () => {
    const { f } = await start({ START_TWICE: '1' })
    await sleep(300)
    expect(f.count('fork')).toBe(2)
    expect((await statusOf(f)).workers).toHaveLength(2)
    expect((await f.call('internals')).sigint).toBe(1)
    f.signal('SIGINT')
    expect((await f.waitForExit()).code).toBe(0)
  })
})
