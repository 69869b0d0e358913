import { describe, expect, it } from 'vitest'
import { fakeClock } from './clock.testing.js'
import { afterEnd, type Clock, fixedRate, type RunOutcome, Ticker, type TickerOptions } from './schedule.js'

function ticker(clock: Clock, over: Partial<TickerOptions<number>> & Pick<TickerOptions<number>, 'next'>) {
  const outcomes: RunOutcome<number>[] = []
  const skipped: number[] = []
  let n = 0
  const t = new Ticker<number>({
    timeoutMs: 1000,
    run: () => ++n,
    settled: (o) => outcomes.push(o),
    skipped: (at) => skipped.push(at),
    clock,
    ...over,
  })
  return { t, outcomes, skipped }
}

describe('Ticker', () => {
  it('a run that overruns its period: the tick that came due meanwhile runs late, at once, not lost', async () => {
    const c = fakeClock(0)
    let call = 0
    const { t, outcomes } = ticker(c.clock, {
      next: fixedRate(100, 0),
      run: () => new Promise<number>((resolve) => c.clock.setTimer(++call === 1 ? 150 : 10, () => resolve(call))),
    })
    await t.start({ runNow: false })
    await c.advance(420)
    expect(outcomes.map((o) => [o.scheduledAt, o.startedAt])).toEqual([
      [100, 100],
      [200, 250],
      [300, 300],
      [400, 400],
    ])
  })

  it('fixed rate: 15 ticks in 3 s at 200 ms, on the grid, whatever each run takes', async () => {
    const c = fakeClock(1000)
    const { t, outcomes } = ticker(c.clock, {
      next: fixedRate(200, 1000),
      run: () => new Promise<number>((resolve) => c.clock.setTimer(30, () => resolve(1))),
    })
    await t.start({ runNow: false })
    await c.advance(4000 + 30) // the 15th tick is due at 4000 and takes 30 ms
    expect(outcomes.map((o) => o.scheduledAt)).toEqual(Array.from({ length: 15 }, (_, i) => 1200 + i * 200))
    expect(outcomes.every((o) => o.ok && o.durationMs === 30)).toBe(true)
  })

  it('after end: the next run starts everyMs after the previous one ended', async () => {
    const c = fakeClock(0)
    const { t, outcomes } = ticker(c.clock, {
      next: afterEnd(200),
      run: () => new Promise<number>((resolve) => c.clock.setTimer(50, () => resolve(1))),
    })
    void t.start({ runNow: true })
    await c.advance(1000)
    expect(outcomes.map((o) => o.startedAt)).toEqual([0, 250, 500, 750])
  })

  it('a throw and a timeout are outcomes; the schedule goes on; a run never overlaps itself', async () => {
    const c = fakeClock(0)
    let call = 0
    let live = 0
    let maxLive = 0
    const { t, outcomes, skipped } = ticker(c.clock, {
      next: fixedRate(100, 0),
      timeoutMs: 50,
      run: () => {
        call++
        if (call === 1) throw new Error('boom')
        if (call === 2) {
          // hangs for 250 ms: times out at 50, still running at the next two ticks
          live++
          maxLive = Math.max(maxLive, live)
          return new Promise<number>((resolve) =>
            c.clock.setTimer(250, () => {
              live--
              resolve(2)
            }),
          )
        }
        live++
        maxLive = Math.max(maxLive, live)
        live--
        return call
      },
    })
    await t.start({ runNow: false })
    await c.advance(650)
    expect(outcomes[0]).toMatchObject({ ok: false, timedOut: false, scheduledAt: 100 })
    expect(outcomes[1]).toMatchObject({ ok: false, timedOut: true, scheduledAt: 200 })
    expect(skipped).toEqual([300, 400])
    expect(outcomes.slice(2).map((o) => o.scheduledAt)).toEqual([500, 600])
    expect(maxLive).toBe(1)
  })

  it('a timer that fires late runs its tick, then the latest missed one at once, not a burst', async () => {
    const c = fakeClock(0)
    const { t, outcomes } = ticker(c.clock, { next: fixedRate(100, 0) })
    await t.start({ runNow: false })
    await c.advance(99)
    await c.advance(450, { late: true }) // the loop was blocked: the timer due at 100 fires at 450
    await c.advance(550)
    expect(outcomes.map((o) => o.scheduledAt)).toEqual([100, 400, 500])
    expect(outcomes[1]?.startedAt).toBe(450)
  })

  it('stop() cancels the next tick, aborts the running one and drops its outcome', async () => {
    const c = fakeClock(0)
    let signal: AbortSignal | undefined
    const { t, outcomes } = ticker(c.clock, {
      next: fixedRate(100, 0),
      run: (tick) => {
        signal = tick.signal
        return new Promise<number>((resolve) => c.clock.setTimer(50, () => resolve(1)))
      },
    })
    await t.start({ runNow: false })
    await c.advance(120)
    t.stop()
    await c.advance(1000)
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBe('shutdown')
    expect(outcomes).toEqual([])
    expect(c.pending()).toBe(0)
  })
})
