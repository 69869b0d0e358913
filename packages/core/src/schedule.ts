/**
 * The one scheduler behind shared values and jobs: runs a task on a schedule, single-flight (a run
 * still going when the next tick comes skips that tick), against a deadline, and rearms the next
 * tick in a `finally`, so no path — a throw, a timeout, a bad result — takes a task off its schedule.
 */

/** Time and timers, injected so the logic is tested without waiting. */
export interface Clock {
  now(): number
  setTimer(ms: number, fn: () => void): { cancel(): void }
}

export const realClock: Clock = {
  now: Date.now,
  setTimer: (ms, fn) => {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return { cancel: () => clearTimeout(timer) }
  },
}

/** What a run is told: the time it was due, and a signal aborted when it times out or the cluster stops. */
export interface Tick {
  scheduledAt: number
  signal: AbortSignal
}

export type RunOutcome<T> =
  | { ok: true; value: T; scheduledAt: number; startedAt: number; durationMs: number }
  | { ok: false; error: unknown; timedOut: boolean; scheduledAt: number; startedAt: number; durationMs: number }

export interface TickerOptions<T> {
  /**
   * When the tick after one due at `previous` comes, now that it is `now` (the previous run just
   * ended); `undefined` for never. Interval: `now + everyMs` (from the end) or the next slot after
   * `now` on a fixed grid; cron: the expression's next time.
   */
  next(previous: number, now: number): number | undefined
  timeoutMs: number
  run(tick: Tick): T | Promise<T>
  /** Each settled run (not called once stopped). */
  settled(outcome: RunOutcome<T>): void
  /** A tick that came while the previous run was still going (after a timeout) and was skipped. */
  skipped(scheduledAt: number): void
  clock?: Clock
}

export class Ticker<T> {
  readonly #o: TickerOptions<T>
  readonly #clock: Clock
  #timer: { cancel(): void } | undefined
  /** The run still going, until it really settled (a timed-out run may still be running). */
  #running: Promise<void> | undefined
  #controller: AbortController | undefined
  #stopped = false
  #started = false

  constructor(options: TickerOptions<T>) {
    this.#o = options
    this.#clock = options.clock ?? realClock
  }

  /** Arms the first tick; `runNow` runs one at once and resolves when it settled. */
  start({ runNow }: { runNow: boolean }): Promise<void> {
    if (this.#started) return Promise.resolve()
    this.#started = true
    const now = this.#clock.now()
    if (runNow) return this.#tick(now)
    this.#arm(now, now)
    return Promise.resolve()
  }

  /** No more ticks; a run still going is aborted (reason `'shutdown'`) and its outcome dropped. */
  stop(): void {
    this.#stopped = true
    this.#timer?.cancel()
    this.#timer = undefined
    this.#controller?.abort('shutdown')
  }

  get running(): boolean {
    return this.#running !== undefined
  }

  async #tick(scheduledAt: number): Promise<void> {
    if (this.#running) {
      this.#o.skipped(scheduledAt)
      this.#arm(scheduledAt, this.#clock.now())
      return
    }
    const { timeoutMs } = this.#o
    const controller = new AbortController()
    this.#controller = controller
    const startedAt = this.#clock.now()
    const running = (async () => this.#o.run({ scheduledAt, signal: controller.signal }))()
    const settledAnyway = running.then(
      () => {},
      () => {},
    )
    this.#running = settledAnyway
    void settledAnyway.then(() => {
      if (this.#running === settledAnyway) this.#running = undefined
    })
    let timer: { cancel(): void } | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = this.#clock.setTimer(timeoutMs, () => {
        const error = new Error(`timed out after ${timeoutMs} ms`)
        controller.abort(error)
        reject(error)
      })
    })
    let outcome: RunOutcome<T>
    try {
      const value = await Promise.race([running, deadline])
      outcome = { ok: true, value, scheduledAt, startedAt, durationMs: this.#clock.now() - startedAt }
    } catch (error) {
      const timedOut = controller.signal.aborted && controller.signal.reason === error
      outcome = { ok: false, error, timedOut, scheduledAt, startedAt, durationMs: this.#clock.now() - startedAt }
    } finally {
      // Every path, whatever happened above, keeps the task on its schedule.
      timer?.cancel()
      this.#arm(scheduledAt, this.#clock.now())
    }
    if (!this.#stopped) this.#o.settled(outcome)
  }

  #arm(previous: number, now: number): void {
    if (this.#stopped) return
    const at = this.#o.next(previous, now)
    if (at === undefined) return
    this.#timer = this.#clock.setTimer(Math.max(0, at - now), () => {
      this.#timer = undefined
      void this.#tick(at)
    })
  }
}

/** `everyMs` measured from the end of the previous run: what shared values use. */
export function afterEnd(everyMs: number): TickerOptions<unknown>['next'] {
  return (_previous, now) => now + everyMs
}

/**
 * Fixed rate: ticks on the grid `anchor + k × everyMs`; a run's length never shifts the grid. A tick
 * that came due while the previous run was still going (or while the event loop was blocked) runs
 * late, at once, rather than being lost; of several missed ones only the latest runs, never a burst.
 */
export function fixedRate(everyMs: number, anchor: number): TickerOptions<unknown>['next'] {
  const slotAfter = (t: number) => anchor + (Math.floor((t - anchor) / everyMs) + 1) * everyMs
  return (previous, now) => {
    const latestDue = slotAfter(now) - everyMs
    return latestDue > previous ? latestDue : slotAfter(Math.max(previous, now))
  }
}
