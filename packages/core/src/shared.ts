import { codes, describe, ShoalError } from './errors.js'
import type { Logger } from './logger.js'
import type { SharedSource } from './options.js'
import type { SharedEntry } from './protocol.js'
import { afterEnd, Ticker } from './schedule.js'
import { encodeJson } from './serialize.js'

/** How long startup waits for the first round of computes before forking anyway. */
export const FIRST_COMPUTE_WAIT_MS = 3000
const MAX_COMPUTE_TIMEOUT_MS = 30_000

type Publish = (name: string, entry: SharedEntry) => void

/**
 * The primary's side of shared values: computes each source on its own schedule (single-flight),
 * keeps the last good value on failure, and publishes only real changes, once per change.
 */
export class SharedStore {
  readonly #sources: Record<string, SharedSource<unknown>>
  readonly #log: Logger
  readonly #publish: Publish
  /** Failed computes per source, for `shoal_shared_compute_failures_total`. */
  readonly #failures = new Map<string, number>()
  readonly #entries = new Map<string, SharedEntry & { json: string }>()
  readonly #tickers: Ticker<unknown>[] = []

  constructor(sources: Record<string, SharedSource<unknown>>, log: Logger, publish: Publish) {
    this.#sources = sources
    this.#log = log
    this.#publish = publish
  }

  /** Computes that threw or timed out, per source, since start. */
  failures(): ReadonlyMap<string, number> {
    return this.#failures
  }

  /** Sets static values and starts every compute; resolves when the first round settled or after `waitMs`. */
  async start(waitMs = FIRST_COMPUTE_WAIT_MS): Promise<void> {
    const first: Promise<void>[] = []
    for (const [name, source] of Object.entries(this.#sources)) {
      if ('value' in source) {
        this.#accept(name, source.value, 'value')
      } else {
        const ticker = this.#ticker(name, source)
        this.#tickers.push(ticker)
        first.push(ticker.start({ runNow: true }))
      }
    }
    if (first.length === 0) return
    let timer: NodeJS.Timeout | undefined
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs)
      timer.unref()
    })
    await Promise.race([Promise.all(first), waited])
    clearTimeout(timer)
  }

  stop(): void {
    for (const ticker of this.#tickers) ticker.stop()
  }

  /** Every current entry, for a new worker's snapshot. */
  snapshot(): Record<string, SharedEntry> {
    const out: Record<string, SharedEntry> = {}
    for (const [name, { value, version, updatedAt }] of this.#entries) out[name] = { value, version, updatedAt }
    return out
  }

  get(name: string): unknown {
    return this.#entries.get(name)?.value
  }

  /** Imperative push. Throws `ShoalError` (SHOAL_ERR_NOT_SERIALIZABLE) for a value that cannot cross IPC. */
  set(name: string, value: unknown): void {
    if (typeof name !== 'string' || name.length === 0) {
      throw new ShoalError(codes.SHOAL_ERR_INVALID_OPTION, `Expected a shared value name, got \`${String(name)}\``)
    }
    const encoded = encodeJson(value)
    if (!encoded.ok) throw notSerializable(name, encoded.problem)
    this.#store(name, encoded.json)
  }

  /** Takes a static or computed value; one that cannot cross IPC is logged and the last good value kept. */
  #accept(name: string, value: unknown, origin: string): void {
    const encoded = encodeJson(value)
    if (!encoded.ok) {
      this.#log.error({ name, origin, err: notSerializable(name, encoded.problem) }, 'shared value rejected, last good value kept')
      return
    }
    this.#store(name, encoded.json)
  }

  /** Publishes `json` as the next version, unless it is what workers already have. */
  #store(name: string, json: string): void {
    const previous = this.#entries.get(name)
    if (previous?.json === json) return
    const entry = { value: JSON.parse(json) as unknown, version: (previous?.version ?? 0) + 1, updatedAt: Date.now() }
    this.#entries.set(name, { ...entry, json })
    this.#publish(name, entry)
  }

  #ticker(name: string, source: Extract<SharedSource<unknown>, { compute: unknown }>): Ticker<unknown> {
    return new Ticker<unknown>({
      next: afterEnd(source.everyMs),
      timeoutMs: source.timeoutMs ?? Math.min(source.everyMs, MAX_COMPUTE_TIMEOUT_MS),
      run: () => source.compute(),
      settled: (outcome) => {
        if (outcome.ok) {
          this.#accept(name, outcome.value, 'compute')
          return
        }
        const { error: err } = outcome
        this.#failures.set(name, (this.#failures.get(name) ?? 0) + 1)
        const error = new ShoalError(codes.SHOAL_ERR_COMPUTE_FAILED, `compute for shared value "${name}" failed`, { cause: err })
        this.#log.error({ name, err: err instanceof Error ? err : describe(err) }, `${error.message}, last good value kept`)
      },
      skipped: () => this.#log.warn({ name }, 'shared compute still running from the previous tick, skipped'),
    })
  }
}

function notSerializable(name: string, problem: string): ShoalError {
  return new ShoalError(codes.SHOAL_ERR_NOT_SERIALIZABLE, `shared value "${name}" cannot be sent to workers: ${problem}`)
}
