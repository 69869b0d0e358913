/** Restart delays and the crash-loop breaker: pure logic, no timers, no processes. */

export interface BackoffPolicy {
  /** Delay before the second consecutive restart of a slot; doubles after that. */
  minMs: number
  /** Upper bound of the delay. */
  maxMs: number
  /** A worker that stayed up this long resets its slot's crash count. */
  healthyAfterMs: number
}

export interface CrashLoopPolicy {
  /** Crash weight that trips the breaker inside `windowMs`. */
  maxCrashes: number
  windowMs: number
}

/**
 * Delay before restarting a slot after its `consecutive`-th crash in a row:
 * the first restart is immediate, then minMs, 2·minMs, 4·minMs ... capped at maxMs.
 */
export function restartDelayMs(consecutive: number, policy: Pick<BackoffPolicy, 'minMs' | 'maxMs'>): number {
  if (consecutive <= 1) return 0
  const exponent = Math.min(consecutive - 2, 30)
  return Math.min(policy.maxMs, policy.minMs * 2 ** exponent)
}

/** Crash weight: a worker that died before it was ever ready counts double (it will never serve). */
export function crashWeight(everReady: boolean): number {
  return everReady ? 1 : 2
}

/** Sliding window of crashes across all slots. `record` says whether the breaker tripped. */
export class CrashWindow {
  readonly #events: { at: number; weight: number }[] = []
  readonly #policy: CrashLoopPolicy

  constructor(policy: CrashLoopPolicy) {
    this.#policy = policy
  }

  record(at: number, weight: number): boolean {
    this.#events.push({ at, weight })
    while (this.#events.length > 0 && (this.#events[0]?.at ?? at) <= at - this.#policy.windowMs) this.#events.shift()
    return this.weight() >= this.#policy.maxCrashes
  }

  weight(): number {
    return this.#events.reduce((sum, e) => sum + e.weight, 0)
  }
}
