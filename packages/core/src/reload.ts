/**
 * Rolling reload, the orchestration only: which slots, in what order, how many at once, and how
 * overlapping requests coalesce. Forking, readiness and draining belong to the supervisor.
 */

/** Replace one slot: fork the new worker, wait until it is ready, then drain the old one. Rejects on failure. */
export type ReplaceSlot = (slot: number) => Promise<void>

/** Replaces `slots` in batches of `concurrency`; stops at the first failure (the rest keep their old workers). */
export async function replaceAll(slots: readonly number[], concurrency: number, replace: ReplaceSlot): Promise<void> {
  for (let i = 0; i < slots.length; i += concurrency) {
    const batch = slots.slice(i, i + concurrency)
    const results = await Promise.allSettled(batch.map((slot) => replace(slot)))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }
}

/**
 * At most one reload runs; requests that arrive while it runs share one follow-up reload that
 * starts when it ends, so the code on disk at the last request is what every worker ends on.
 */
export class ReloadQueue<T> {
  #running: Promise<T> | undefined
  #queued: Promise<T> | undefined
  readonly #run: () => Promise<T>

  constructor(run: () => Promise<T>) {
    this.#run = run
  }

  get busy(): boolean {
    return this.#running !== undefined
  }

  request(): Promise<T> {
    if (!this.#running) return this.#start()
    this.#queued ??= this.#running.then(
      () => this.#start(),
      () => this.#start(),
    )
    return this.#queued
  }

  #start(): Promise<T> {
    this.#queued = undefined
    const run = this.#run()
    this.#running = run
    const clear = () => {
      if (this.#running === run) this.#running = undefined
    }
    run.then(clear, clear)
    return run
  }
}
