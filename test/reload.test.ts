// Rolling reload: zero dropped requests, and a bad deploy never replaces a working worker.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { Fixture, isAlive } from './helpers/fixture.js'
import { answerFromEach, get, hammer } from './helpers/http.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** A "deploy directory" the workers read at boot: version, and an optional broken boot. */
function deployDir(version: string): { dir: string; deploy: (v: string, boot?: 'throw' | 'hang') => void } {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-deploy-'))
  dirs.push(dir)
  const deploy = (v: string, boot?: 'throw' | 'hang') => {
    writeFileSync(join(dir, 'version'), v)
    if (boot) writeFileSync(join(dir, 'boot'), boot)
    else rmSync(join(dir, 'boot'), { force: true })
  }
  deploy(version)
  return { dir, deploy }
}

async function start(fixture: string, env: Record<string, string> = {}) {
  const { dir, deploy } = deployDir('v1')
  const f = new Fixture(fixture, { WORKERS: '2', DEPLOY_DIR: dir, ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { pid: number; address: string }[] }
  return { f, deploy, address: status.workers[0]?.address ?? '', pids: status.workers.map((w) => w.pid) }
}

/** Each worker's code version, by pid (2 workers). */
async function versions(address: string): Promise<Map<number, string>> {
  const seen = new Map<number, string>()
  for (const [pid, reply] of await answerFromEach(address, 2)) seen.set(pid, reply.json<{ version: string }>().version)
  return seen
}

describe.each(['core-primary.mjs', 'express-app.mjs', 'fastify-app.mjs'])('rolling reload through %s', (fixture) => {
  it('replaces every worker with new pids while keep-alive clients hammer it: zero failed requests', async () => {
    const { f, deploy, address, pids } = await start(fixture)
    const client = hammer(`${address}/spin?ms=2`, { sockets: 8, maxMs: 40_000 })
    await f.waitUntil(() => (client.result.sent > 100 ? true : undefined), 'traffic')
    deploy('v2')
    const reply = await f.call('reload')
    const sentAfterReload = client.result.sent
    await f.waitUntil(() => (client.result.sent > sentAfterReload + 100 ? true : undefined), 'traffic after reload')
    const result = await client.stop()
    expect(reply).toMatchObject({ ok: true, outcome: { generation: 1, replaced: 2 } })
    expect(result.errors).toEqual([])
    expect(Object.keys(result.statuses)).toEqual(['200'])
    const after = await versions(address)
    expect([...after.values()]).toEqual(['v2', 'v2'])
    for (const pid of pids) {
      expect(after.has(pid)).toBe(false)
      expect(isAlive(pid)).toBe(false)
    }
    const status = (await f.call('status')).status as { workers: { generation: number }[]; reloading: boolean }
    expect(status.workers.map((w) => w.generation)).toEqual([1, 1])
    expect(status.reloading).toBe(false)
  })
})

describe('rolling reload', () => {
  it('a client pool with long-idle keep-alive sockets: none is reset when the client falls back on them', async () => {
    // Regression: idle sockets used to be destroyed at drain start, just as `Connection: close` on the
    // busy sockets sent the client to exactly those pooled sockets.
    const { f, deploy, address } = await start('core-primary.mjs', { FIXTURE_OPTS: JSON.stringify({ idleSocketGraceMs: 500 }) })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 24, scheduling: 'lifo' })
    await Promise.all(Array.from({ length: 24 }, () => get(`${address}/slow?ms=100`, agent)))
    await new Promise((r) => setTimeout(r, 1000)) // the pool now sits idle longer than the grace
    const client = hammer(`${address}/spin?ms=1`, { sockets: 4, agent, maxMs: 30_000 })
    await f.waitUntil(() => (client.result.sent > 50 ? true : undefined), 'traffic')
    deploy('v2')
    expect(await f.call('reload')).toMatchObject({ ok: true })
    const result = await client.stop()
    expect(result.errors).toEqual([])
    agent.destroy()
  })

  it('SIGUSR2 triggers it', async () => {
    const { f, deploy, address } = await start('core-primary.mjs')
    deploy('v2')
    f.signal('SIGUSR2')
    expect(await f.event('reload-done')).toMatchObject({ generation: 1, replaced: 2 })
    expect([...(await versions(address)).values()]).toEqual(['v2', 'v2'])
  })

  it('a new version that throws at boot: reload fails, the old workers keep serving, a fixed deploy then reloads', async () => {
    const { f, deploy, address, pids } = await start('express-app.mjs')
    deploy('v2', 'throw')
    const failed = await f.call('reload')
    expect(failed).toMatchObject({ ok: false, code: 'SHOAL_ERR_RELOAD_FAILED', error: expect.stringContaining('boom at boot') })
    expect(await f.event('reload-failed')).toMatchObject({ generation: 1, slot: 0 })
    const serving = await versions(address)
    expect(new Set(serving.keys())).toEqual(new Set(pids))
    expect([...serving.values()]).toEqual(['v1', 'v1'])
    expect(f.count('crash-loop')).toBe(0)

    deploy('v3')
    expect(await f.call('reload')).toMatchObject({ ok: true })
    expect([...(await versions(address)).values()]).toEqual(['v3', 'v3'])
  })

  it('a new version that never becomes ready: reload fails after readyTimeoutMs, old workers keep serving', async () => {
    const { f, deploy, address, pids } = await start('core-primary.mjs', { FIXTURE_OPTS: JSON.stringify({ readyTimeoutMs: 1500 }) })
    deploy('v2', 'hang')
    const failed = await f.call('reload')
    expect(failed).toMatchObject({ ok: false, code: 'SHOAL_ERR_RELOAD_FAILED', error: expect.stringContaining('not ready within') })
    const serving = await versions(address)
    expect(new Set(serving.keys())).toEqual(new Set(pids))
    const forks = f.events.filter((e) => e.ev === 'fork' && !pids.includes(e.pid as number))
    expect(forks).toHaveLength(1) // stopped at the first slot
    await f.waitUntil(() => (isAlive(forks[0]?.pid as number) ? undefined : true), 'replacement killed', 5000)
  })

  it('signal-free trigger (Windows): a worker asks the primary with the built-in shoal:reload command', async () => {
    const { f, deploy, address } = await start('express-app.mjs')
    deploy('v2')
    const asked = (await get(`${address}/ask?cmd=shoal:reload`)).json()
    expect(asked).toEqual({ ok: true, value: { started: true } })
    expect(await f.event('reload-done')).toMatchObject({ generation: 1, replaced: 2 })
    expect([...(await versions(address)).values()]).toEqual(['v2', 'v2'])
  })

  it('a storm of requests coalesces: one reload plus at most one follow-up', async () => {
    const { f } = await start('core-primary.mjs')
    const reply = await f.call('reload-many', { count: 10 })
    const generations = new Set((reply.outcomes as { generation: number }[]).map((o) => o.generation))
    expect(generations).toEqual(new Set([1, 2]))
    expect(f.count('reload-start')).toBe(2)
  })
})
