// Reliability suite (`pnpm test:chaos`, also part of `npm test`): bounded in time and count,
// loopback only, every process it started is killed by group afterwards.
import { describe, expect, it } from 'vitest'
import { Fixture, isAlive, sleep } from '../helpers/fixture.js'
import { answerFromEach, get, hammer } from '../helpers/http.js'

async function start(env: Record<string, string> = {}, opts: Record<string, unknown> = {}) {
  const f = new Fixture('express-app.mjs', { WORKERS: '2', FIXTURE_OPTS: JSON.stringify({ logger: 'silent', ...opts }), ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; address: string }[] }
  return { f, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

type Status = { workers: { pid: number; state: string }[]; target: number }

describe('soak', () => {
  it('sustained load, a worker SIGKILLed every 2 s and two reloads: only the killed workers’ in-flight requests fail', async () => {
    const { f, address } = await start({}, { restartBackoff: { minMs: 50 } })
    const sockets = 8
    const client = hammer(`${address}/spin?ms=1`, { sockets, maxMs: 40_000, requestTimeoutMs: 4000 })
    await f.waitUntil(() => (client.result.sent > 100 ? true : undefined), 'traffic')
    let kills = 0
    for (let round = 0; round < 6; round++) {
      await sleep(2000)
      if (round === 1 || round === 4) {
        expect(await f.call('reload')).toMatchObject({ ok: true })
        continue
      }
      const { workers } = (await f.call('status')).status as Status
      const victim = workers[Math.floor(Math.random() * workers.length)]
      if (victim) {
        process.kill(victim.pid, 'SIGKILL')
        kills++
      }
    }
    await sleep(1500)
    const result = await client.stop()
    const kinds: Record<string, number> = {}
    for (const e of result.errors) {
      const kind = e.replace(/http:\/\/\S+/, 'URL')
      kinds[kind] = (kinds[kind] ?? 0) + 1
    }
    console.log(
      `soak: ${result.sent} requests, ${result.statuses[200]} × 200, ${result.errors.length} failed ${JSON.stringify(kinds)}, ${kills} kills, 2 reloads`,
    )
    // The last kill's replacement may still be booting on a loaded machine: the count must come back
    // to target, within a bound, not within a fixed sleep.
    let status = (await f.call('status')).status as Status
    for (let i = 0; i < 80 && status.workers.filter((w) => w.state === 'ready').length < status.target; i++) {
      await sleep(250)
      status = (await f.call('status')).status as Status
    }
    const { workers, target } = status
    const history = f.events.filter((e) => ['fork', 'ready', 'exit', 'restart-scheduled', 'spawn-error', 'reload-done'].includes(e.ev))
    expect(
      workers.filter((w) => w.state === 'ready'),
      `workers ${JSON.stringify(workers)}; ${JSON.stringify(history)}`,
    ).toHaveLength(target)
    expect(result.statuses[200]).toBeGreaterThan(500)
    expect(Object.keys(result.statuses)).toEqual(['200'])
    // A killed worker can take down at most what it had in flight: one request per client socket, plus
    // the connection the primary was handing it at that instant. Those fail as resets, never as a 5xx;
    // the handed-over one hangs instead (Node's RoundRobinHandle never closes a connection whose worker
    // died before acknowledging it, nodejs/node#21746), so the client's timeout ends it.
    expect(result.errors.length).toBeLessThanOrEqual(kills * (sockets + 1))
    for (const e of result.errors) expect(e).toMatch(/^(ECONNRESET|socket hang up|no answer from)/)

    const forked = f.events.filter((e) => e.ev === 'fork').map((e) => e.pid as number)
    f.signal('SIGTERM')
    expect((await f.waitForExit()).code).toBe(0)
    for (const pid of forked) expect(isAlive(pid)).toBe(false)
  })
})

describe('signals', () => {
  it('SIGTERM during a reload: the reload stops, everything drains and exits', async () => {
    const { f, address } = await start()
    f.signal('SIGUSR2')
    await f.event('reload-start')
    f.signal('SIGTERM')
    const { code } = await f.waitForExit()
    expect(code).toBe(0)
    for (const e of f.events.filter((e) => e.ev === 'fork')) expect(isAlive(e.pid as number)).toBe(false)
    await expect(get(`${address}/`)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('SIGUSR2 during shutdown is ignored; the shutdown finishes cleanly', async () => {
    const { f, address } = await start()
    const slow = get(`${address}/slow?ms=1000`)
    await sleep(200)
    f.signal('SIGTERM')
    await sleep(100)
    f.signal('SIGUSR2')
    expect((await slow).status).toBe(200)
    expect((await f.waitForExit()).code).toBe(0)
    expect(f.count('reload-start')).toBe(0)
  })

  it('a reload storm (10 SIGUSR2 in a row) coalesces and ends with every worker on new code', async () => {
    const { f, address, pids } = await start()
    for (let i = 0; i < 10; i++) f.signal('SIGUSR2')
    await f.event('reload-done')
    await sleep(1500)
    const starts = f.count('reload-start')
    expect(starts).toBeGreaterThanOrEqual(1)
    expect(starts).toBeLessThanOrEqual(2)
    await f.waitUntil(() => (f.count('reload-done') === starts ? true : undefined), 'every reload done')
    const seen = new Set<number>()
    for (let i = 0; i < 20; i++) seen.add((await get(`${address}/`)).json<{ pid: number }>().pid)
    for (const pid of pids) expect(seen.has(pid)).toBe(false)
  })
})

describe('bad input', () => {
  it('a worker spraying malformed IPC never takes the primary down', async () => {
    const { f, address, pids } = await start({}, { logger: 'text' })
    for (let i = 0; i < 5; i++) await get(`${address}/fuzz?n=400`)
    const seen = new Set((await answerFromEach(address, pids.length)).keys())
    expect(seen).toEqual(new Set(pids))
    expect(f.count('exit')).toBe(0)
    expect(isAlive(f.pid)).toBe(true)
  })
})

describe('memory', () => {
  it('primary memory, timers and listeners stay flat over many respawns', async () => {
    const { f, address } = await start({}, { restartBackoff: { minMs: 1, maxMs: 5, healthyAfterMs: 0 }, crashLoop: { maxCrashes: 10_000 } })
    const crash = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const before = f.count('ready')
        await get(`${address}/exit`).catch(() => {})
        await f.waitUntil(() => (f.count('ready') > before ? true : undefined), 'respawn')
      }
    }
    await crash(10)
    const early = await f.call('internals')
    await crash(50)
    const late = await f.call('internals')
    const mb = (b: unknown) => ((b as number) / 1024 / 1024).toFixed(1)
    console.log(
      `respawns 10 → 60: primary rss ${mb(early.rss)} → ${mb(late.rss)} MB, heap ${mb(early.heapUsed)} → ${mb(late.heapUsed)} MB, timers ${early.timers} → ${late.timers}, handles ${early.resources} → ${late.resources}`,
    )
    expect(late.workers).toBe(2)
    expect(late.timers).toBeLessThanOrEqual(early.timers as number)
    expect(late.resources).toBeLessThanOrEqual((early.resources as number) + 2)
    expect(late.sigint).toBe(early.sigint)
    expect((late.rss as number) - (early.rss as number)).toBeLessThan(40 * 1024 * 1024)
  })
})
