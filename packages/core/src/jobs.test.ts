import { describe, expect, it } from 'vitest'
import { fakeClock } from './clock.testing.js'
import { type JobRunReport, Jobs } from './jobs.js'
import type { Logger } from './logger.js'
import type { Job } from './options.js'

function recorder() {
  const lines: string[] = []
  const log: Logger = {
    info: () => {},
    debug: () => {},
    warn: (_o: object | string, msg?: string) => lines.push(`warn ${msg}`),
    error: (_o: object | string, msg?: string) => lines.push(`error ${msg}`),
  }
  return { log, lines }
}

const never = () => Promise.reject(new Error('no worker in this test'))

describe('Jobs', () => {
  it('a failing run is logged with the job’s name and the next tick still runs; status shows the last run', async () => {
    const c = fakeClock(0)
    const r = recorder()
    const reports: JobRunReport[] = []
    let n = 0
    const jobs: Record<string, Job> = {
      purge: {
        everyMs: 100,
        run: () => {
          n++
          if (n === 2) throw new Error('db down')
        },
      },
    }
    const j = new Jobs(jobs, r.log, never, (rep) => reports.push(rep), c.clock)
    await j.start()
    await c.advance(350)
    expect(reports.map((x) => [x.scheduledAt, x.outcome])).toEqual([
      [100, 'ok'],
      [200, 'failed'],
      [300, 'ok'],
    ])
    expect(r.lines).toEqual(['error job "purge" failed: db down; the next tick still runs'])
    expect(j.status().purge).toMatchObject({
      runs: 3,
      failures: 1,
      skipped: 0,
      nextRunAt: 400,
      lastRun: { outcome: 'ok', scheduledAt: 300 },
    })
  })

  it('a run past its timeout is a `timeout` outcome, its signal aborted', async () => {
    const c = fakeClock(0)
    let signal: AbortSignal | undefined
    const j = new Jobs(
      {
        slow: {
          everyMs: 1000,
          timeoutMs: 50,
          run: (job) => {
            signal = job.signal
            return new Promise(() => {})
          },
        },
      },
      recorder().log,
      never,
      undefined,
      c.clock,
    )
    await j.start()
    await c.advance(1100)
    expect(j.status().slow?.lastRun).toMatchObject({ outcome: 'timeout', durationMs: 50, error: 'timed out after 50 ms' })
    expect(signal?.aborted).toBe(true)
  })

  it('cron: ticks at the expression’s times (croner); a bad expression fails start naming the job', async () => {
    const start = Date.UTC(2030, 0, 1, 0, 0, 10)
    const c = fakeClock(start)
    const at: number[] = []
    const j = new Jobs(
      { every5s: { cron: '*/5 * * * * *', run: (job) => void at.push(job.scheduledAt) } },
      recorder().log,
      never,
      undefined,
      c.clock,
    )
    await j.start()
    await c.advance(start + 12_000)
    expect(at.map((t) => t - start)).toEqual([5000, 10_000])
    const bad = new Jobs({ nightly: { cron: '61 * * * *', run: () => {} } }, recorder().log, never)
    await expect(bad.start()).rejects.toMatchObject({
      code: 'SHOAL_ERR_INVALID_OPTION',
      message: expect.stringMatching(/`jobs\.nightly\.cron`/),
    })
  })
})
