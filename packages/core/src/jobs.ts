/**
 * Jobs that run once per cluster: in the primary only (or the single process with `workers: 0`), on
 * the scheduler shared values use (single-flight, deadline, rescheduled whatever happened). A job
 * may hand its work to a worker (`job.inWorker`) when it needs the app's own modules.
 */

import { codes, describe, errorMessage, invalidOption, ShoalError, type ShoalErrorCode } from './errors.js'
import { runInWorker } from './in-worker.js'
import type { Logger } from './logger.js'
import type { Job, JobRun } from './options.js'
import { type Clock, fixedRate, realClock, type Tick, Ticker, type TickerOptions } from './schedule.js'
import { encodeJson } from './serialize.js'

/** A job run's default deadline when it names none: its period, at most a minute (cron: a minute). */
const MAX_DEFAULT_TIMEOUT_MS = 60_000

export interface JobRunReport {
  name: string
  scheduledAt: number
  startedAt: number
  durationMs: number
  outcome: 'ok' | 'failed' | 'timeout'
  /** Why it failed. */
  error?: string
}

export interface JobStatus {
  runs: number
  failures: number
  /** Ticks that came while the previous run was still going (after it timed out), so did not run. */
  skipped: number
  /** When the next tick is due; undefined while a run is going. */
  nextRunAt: number | undefined
  lastRun: Omit<JobRunReport, 'name'> | undefined
}

export type AskWorker = (cmd: string, payload: unknown, options: { timeoutMs: number; signal: AbortSignal }) => Promise<unknown>

/** Parses cron expressions; croner is an optional peer, loaded only when a job uses `cron`. */
type CronLike = { nextRun(previous?: Date): Date | null }
type CronFactory = (pattern: string) => CronLike

async function loadCron(jobs: Record<string, Job>): Promise<CronFactory | undefined> {
  const first = Object.entries(jobs).find(([, job]) => 'cron' in job && job.cron !== undefined)
  if (!first) return undefined
  try {
    const { Cron } = await import('croner')
    return (pattern) => new Cron(pattern)
  } catch (err) {
    throw invalidOption(
      `jobs.${first[0]}.cron`,
      'a cron expression with the optional peer dependency `croner` installed (npm install croner), or `everyMs` instead',
      `${(first[1] as { cron: string }).cron}; croner could not be loaded: ${errorMessage(err)}`,
    )
  }
}

export class Jobs {
  readonly #jobs: Record<string, Job>
  readonly #log: Logger
  readonly #ask: AskWorker
  readonly #onRun: (report: JobRunReport) => void
  readonly #clock: Clock
  readonly #tickers = new Map<string, Ticker<unknown>>()
  readonly #status = new Map<string, JobStatus>()

  constructor(jobs: Record<string, Job>, log: Logger, ask: AskWorker, onRun: (report: JobRunReport) => void = () => {}, clock = realClock) {
    this.#jobs = jobs
    this.#log = log
    this.#ask = ask
    this.#onRun = onRun
    this.#clock = clock
  }

  /**
   * Arms every job's first tick (none runs at start: an `everyMs` job first runs `everyMs` from now).
   * Rejects with `ShoalError` for a cron expression croner refuses, or croner missing.
   */
  async start(): Promise<void> {
    const cron = await loadCron(this.#jobs)
    const now = this.#clock.now()
    const planned: [string, Job, TickerOptions<unknown>['next']][] = []
    for (const [name, job] of Object.entries(this.#jobs)) {
      planned.push([name, job, 'cron' in job && job.cron !== undefined ? cronNext(name, job.cron, cron) : fixedRate(job.everyMs, now)])
    }
    for (const [name, job, next] of planned) {
      const everyMs = 'everyMs' in job && job.everyMs !== undefined ? job.everyMs : Number.POSITIVE_INFINITY
      const timeoutMs = job.timeoutMs ?? Math.min(everyMs, MAX_DEFAULT_TIMEOUT_MS)
      const status: JobStatus = { runs: 0, failures: 0, skipped: 0, nextRunAt: undefined, lastRun: undefined }
      this.#status.set(name, status)
      const ticker = new Ticker<unknown>({
        next: (previous, at) => {
          status.nextRunAt = next(previous, at)
          return status.nextRunAt
        },
        timeoutMs,
        run: (tick) => job.run(this.#runFor(name, tick, timeoutMs)),
        settled: (outcome) => this.#settled(name, status, outcome),
        skipped: (scheduledAt) => {
          status.skipped++
          this.#log.warn({ job: name, scheduledAt }, `job "${name}" still running from the previous tick, this tick skipped`)
        },
        clock: this.#clock,
      })
      this.#tickers.set(name, ticker)
      await ticker.start({ runNow: false })
    }
  }

  stop(): void {
    for (const ticker of this.#tickers.values()) ticker.stop()
  }

  status(): Record<string, JobStatus> {
    const out: Record<string, JobStatus> = {}
    for (const [name, s] of this.#status) {
      out[name] = { ...s, nextRunAt: this.#tickers.get(name)?.running ? undefined : s.nextRunAt, lastRun: s.lastRun && { ...s.lastRun } }
    }
    return out
  }

  /** What `run` gets; `inWorker` may take the run's whole deadline by default. */
  #runFor(name: string, { scheduledAt, signal }: Tick, defaultTimeoutMs: number): JobRun {
    return Object.freeze({
      name,
      scheduledAt,
      signal,
      inWorker: <T>(cmd: string, payload?: unknown, options: { timeoutMs?: number } = {}) =>
        this.#ask(cmd, payload, { timeoutMs: options.timeoutMs ?? defaultTimeoutMs, signal }) as Promise<T>,
    })
  }

  #settled(name: string, status: JobStatus, outcome: Parameters<TickerOptions<unknown>['settled']>[0]): void {
    const { scheduledAt, startedAt, durationMs } = outcome
    status.runs++
    let report: JobRunReport
    if (outcome.ok) {
      report = { name, scheduledAt, startedAt, durationMs, outcome: 'ok' }
    } else {
      status.failures++
      const error = errorMessage(outcome.error)
      report = { name, scheduledAt, startedAt, durationMs, outcome: outcome.timedOut ? 'timeout' : 'failed', error }
      const failure = new ShoalError(codes.SHOAL_ERR_JOB_FAILED, `job "${name}" failed: ${error}`, { cause: outcome.error })
      const err = outcome.error instanceof Error ? outcome.error : describe(outcome.error)
      this.#log.error({ job: name, err, code: failure.code }, `${failure.message}; the next tick still runs`)
    }
    const { name: _name, ...lastRun } = report
    status.lastRun = lastRun
    this.#onRun(report)
  }
}

function cronNext(name: string, pattern: string, factory: CronFactory | undefined): TickerOptions<unknown>['next'] {
  let cron: CronLike
  try {
    if (!factory) throw new Error('croner is not loaded')
    cron = factory(pattern)
  } catch (err) {
    throw invalidOption(`jobs.${name}.cron`, `a cron expression (${errorMessage(err)})`, pattern)
  }
  return (previous, now) => cron.nextRun(new Date(Math.max(previous, now)))?.getTime()
}

/** `job.inWorker` without a primary: this process is the worker, with the same checks and errors. */
export const askInProcess: AskWorker = async (cmd, payload) => {
  const encoded = payload === undefined ? undefined : encodeJson(payload)
  if (encoded && !encoded.ok) {
    throw new ShoalError(codes.SHOAL_ERR_NOT_SERIALIZABLE, `payload for "${cmd}" cannot be sent: ${encoded.problem}`)
  }
  const answer = await runInWorker(cmd, encoded && JSON.parse(encoded.json))
  // What would arrive across IPC: a JSON copy, never the handler's own object.
  if (answer.ok) return answer.value === undefined ? undefined : JSON.parse(JSON.stringify(answer.value))
  throw new ShoalError(answer.error.code as ShoalErrorCode, answer.error.message)
}
