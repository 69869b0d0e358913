// Shared values and worker → primary requests, across real processes.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { answerFromEach, get } from './helpers/http.js'

type Shared = { pid: number; shared: Record<string, unknown>; info?: { version: number; updatedAt: number } | null }

async function start(shared: string, env: Record<string, string> = {}, fixture = 'core-primary.mjs') {
  const f = new Fixture(fixture, { WORKERS: '2', SHARED: shared, ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; address: string }[] }
  return { f, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

/** Requests on fresh connections until every pid in `pids` answered; returns each worker's first answer. */
async function firstAnswers(address: string, pids: number[], path = '/'): Promise<Map<number, Shared>> {
  const seen = new Map<number, Shared>()
  for (const reply of (await answerFromEach(address, pids.length, path)).values()) {
    const body = reply.json<Shared>()
    seen.set(body.pid, body)
  }
  return seen
}

describe.each(['core-primary.mjs', 'express-app.mjs', 'fastify-app.mjs'])('shared values through %s', (fixture) => {
  it('every worker, a respawned one included, has the value on its first request', async () => {
    const { f, address, pids } = await start('slow-first', {}, fixture)
    for (const body of (await firstAnswers(address, pids)).values()) expect(body.shared).toEqual({ usersCount: 7 })
    await f.call('set', { name: 'usersCount', value: 8 })
    process.kill(pids[0] as number, 'SIGKILL')
    const fresh = await f.event('ready', (e) => !pids.includes(e.pid as number))
    const answers = await firstAnswers(address, [fresh.pid as number, pids[1] as number])
    expect(answers.get(fresh.pid as number)?.shared).toEqual({ usersCount: 8 })
  })
})

describe('shared values', () => {
  it('updates arrive in every worker', async () => {
    const { address, pids } = await start('counter')
    const deadline = Date.now() + 15_000
    let answers = await firstAnswers(address, pids)
    while ([...answers.values()].some((a) => Number(a.shared.tick) < 5) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
      answers = await firstAnswers(address, pids)
    }
    for (const a of answers.values()) {
      expect(Number(a.shared.tick)).toBeGreaterThanOrEqual(5)
      expect(a.shared.motto).toBe('hello')
    }
  })

  it('a throwing or unserializable compute is logged, the last good value kept, the service up', async () => {
    const { f, address, pids } = await start('flaky')
    // calls: 1 → 100, 2..4 throw, 5..7 return a BigInt, 8.. → 200
    await f.waitForOutput(/database is down/)
    for (const a of (await firstAnswers(address, pids)).values()) expect(a.shared.usersCount).toBe(100)
    await f.waitForOutput(/BigInt/)
    expect(f.stderr).toMatch(/usersCount/)
    for (const a of (await firstAnswers(address, pids)).values()) expect(a.shared.usersCount).toBe(100)
    const deadline = Date.now() + 15_000
    let values: unknown[] = []
    do {
      values = [...(await firstAnswers(address, pids)).values()].map((a) => a.shared.usersCount)
    } while (values.some((v) => v !== 200) && Date.now() < deadline)
    expect(values).toEqual([200, 200])
    expect(f.count('exit')).toBe(0)
  })

  it('primary.shared.set broadcasts real changes only, and refuses what cannot cross IPC', async () => {
    const { f, address, pids } = await start('static')
    const info = async () => [...(await firstAnswers(address, pids, '/info?name=usersCount')).values()].map((a) => a.info)
    expect((await info()).map((i) => i?.version)).toEqual([1, 1])
    await f.call('set', { name: 'usersCount', value: 42 }) // unchanged: not re-sent
    await f.call('set', { name: 'usersCount', value: 43 })
    const after = await firstAnswers(address, pids, '/info?name=usersCount')
    for (const a of after.values()) {
      expect(a.shared.usersCount).toBe(43)
      expect(a.info?.version).toBe(2)
    }
    const refused = await f.call('set-unserializable', { name: 'usersCount' })
    expect(refused).toMatchObject({ ok: false, code: 'SHOAL_ERR_NOT_SERIALIZABLE', error: expect.stringContaining('`.count` is a BigInt') })
    for (const a of (await firstAnswers(address, pids)).values()) expect(a.shared.usersCount).toBe(43)
  })
})

describe('worker → primary requests', () => {
  it('round trip, handler error, bad result, unknown command, timeout', async () => {
    const { address } = await start('')
    const ask = async (q: string) => (await get(`${address}/ask?${q}`)).json<Record<string, unknown>>()
    expect(await ask('cmd=echo&payload={"a":1}')).toMatchObject({ ok: true, value: { payload: { a: 1 } } })
    expect(await ask('cmd=fail')).toMatchObject({
      ok: false,
      code: 'SHOAL_ERR_HANDLER_FAILED',
      message: expect.stringContaining('handler exploded'),
    })
    expect(await ask('cmd=bad')).toMatchObject({ ok: false, code: 'SHOAL_ERR_NOT_SERIALIZABLE' })
    expect(await ask('cmd=nope')).toMatchObject({ ok: false, code: 'SHOAL_ERR_UNKNOWN_COMMAND' })
    expect(await ask('cmd=slow&timeoutMs=200')).toMatchObject({ ok: false, code: 'SHOAL_ERR_REQUEST_TIMEOUT' })
  })

  it('malformed and oversize IPC from a worker never takes the primary down', async () => {
    const { f, address, pids } = await start('static')
    await get(`${address}/garbage`)
    await get(`${address}/garbage`)
    const answers = await firstAnswers(address, pids)
    expect(answers.size).toBe(2)
    expect(f.count('exit')).toBe(0)
    expect(f.stderr).toMatch(/malformed shoal message/)
  })
})
