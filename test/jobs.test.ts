// Jobs once per cluster, across real processes: a primary with 2 workers and a job every 200 ms.
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Fixture, type FixtureEvent } from './helpers/fixture.js'

type Run = FixtureEvent & { n: number; scheduledAt: number; startedAt: number; endedAt: number; maxLive: number; by: number; pid: number }

/**
 * Runs in a 3 s window of the schedule, from the first tick due after the cluster was ready (before
 * it, a job handed to workers waits for one to boot). Ticks are counted by the time they were due
 * (`scheduledAt`, on the primary's clock), not by when the test process happened to read them, so a
 * loaded machine cannot change the count — only a lost or doubled tick can.
 */
async function runsIn3s(f: Fixture): Promise<Run[]> {
  await f.event('started')
  const readyAt = Date.now() // the primary was ready before the test read its event (one machine, one clock)
  const first = (await f.event('job-run', (e) => (e as Run).scheduledAt >= readyAt)) as Run
  const end = first.scheduledAt + 3000
  await f.event('job-run', (e) => (e as Run).scheduledAt >= end, 1, 30_000)
  return f.events.filter((e): e is Run => e.ev === 'job-run' && (e as Run).scheduledAt >= first.scheduledAt && (e as Run).scheduledAt < end)
}

function expectOncePerTick(runs: Run[]): void {
  const gaps = runs.slice(1).flatMap((r, i) => (r.scheduledAt - (runs[i] as Run).scheduledAt !== 200 ? [`before run ${r.n}`] : []))
  if (gaps.length > 0) console.log(`skipped ticks (a late timer or a long run): ${gaps.join(', ')}`)
  expect(runs.length).toBeGreaterThanOrEqual(14)
  expect(runs.length).toBeLessThanOrEqual(16)
  // never twice at once: one run at a time in the whole cluster, and in order
  expect(Math.max(...runs.map((r) => r.maxLive))).toBe(1)
  for (let i = 1; i < runs.length; i++) {
    expect((runs[i] as Run).n).toBe((runs[i - 1] as Run).n + 1)
    expect((runs[i] as Run).startedAt).toBeGreaterThanOrEqual((runs[i - 1] as Run).endedAt)
  }
}

describe('jobs', () => {
  it('a job every 200 ms runs 15 ± 1 times in 3 s, in the primary only, never twice at once', async () => {
    const f = new Fixture('jobs-app.mjs', { WORKERS: '2', JOB_MODE: 'primary' })
    await f.event('started')
    const runs = await runsIn3s(f)
    expectOncePerTick(runs)
    expect(new Set(runs.map((r) => r.by))).toEqual(new Set([f.pid]))
    f.command('status')
    const status = (await f.event('reply')).status as {
      jobs: Record<string, { runs: number; failures: number; lastRun: { outcome: string } }>
    }
    expect(status.jobs.tick).toMatchObject({ failures: 0, lastRun: { outcome: 'ok' } })
    expect(status.jobs.tick?.runs).toBeGreaterThanOrEqual(15)
    console.log(`jobs in the primary: ${runs.length} runs in 3 s`)
  })

  it('handed to a worker: a worker killed mid-run does not skip the tick, another worker runs it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-jobs-'))
    const f = new Fixture('jobs-app.mjs', { WORKERS: '2', JOB_MODE: 'worker', DIE_DIR: dir })
    const started = await f.event('started')
    const workers = (started.status as { workers: { pid: number }[] }).workers.map((w) => w.pid)
    const runs = await runsIn3s(f)
    const dying = await f.event('job-dying')
    const killed = (await f.event('job-run', (e) => e.n === dying.n)) as Run
    expect(killed, `tick ${dying.n} was run`).toBeDefined()
    expect(killed?.by).not.toBe(dying.pid)
    expect(workers).toContain(killed?.by)
    await f.event('exit', (e) => e.pid === dying.pid)
    expectOncePerTick(runs)
    expect(f.count('job-event', (e) => e.outcome !== 'ok')).toBe(0)
    console.log(
      `jobs in workers with a kill: ${runs.length} runs in 3 s; tick ${dying.n} run took ${(killed?.endedAt ?? 0) - (killed?.startedAt ?? 0)} ms`,
    )
  })
  it('with workers: 0 the single process is the cluster: jobs run there, job.inWorker is answered there', async () => {
    const f = new Fixture('jobs-app.mjs', { WORKERS: '0', JOB_MODE: 'worker' })
    await f.event('started')
    const runs = await runsIn3s(f)
    expectOncePerTick(runs)
    expect(new Set(runs.map((r) => r.by))).toEqual(new Set([f.pid]))
  })
})
