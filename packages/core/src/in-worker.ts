/**
 * Work a job hands to a worker, for jobs that need the app's own modules: the worker registers a
 * handler (`handleInWorker`), the primary's job asks (`job.inWorker(cmd, payload)`), the same
 * checks as worker → primary requests apply on the way back. Without a primary it runs in-process.
 */
import type { CommandAnswer } from './dispatch.js'
import { codes, errorMessage } from './errors.js'
import { jsonProblem } from './serialize.js'

export type InWorkerHandler = (payload: unknown) => unknown

const handlers = new Map<string, InWorkerHandler>()

/**
 * In a worker (or a single process): answers `job.inWorker(cmd, payload)` from a job in the primary.
 * One handler per command; returns the function that removes it.
 * @example handleInWorker('report:nightly', async () => (await import('./report.js')).send())
 */
export function handleInWorker(cmd: string, handler: InWorkerHandler): () => void {
  handlers.set(cmd, handler)
  return () => {
    if (handlers.get(cmd) === handler) handlers.delete(cmd)
  }
}

/** True when this process registered a handler for `cmd`. */
export function hasInWorker(cmd: string): boolean {
  return handlers.has(cmd)
}

/** Runs this process's handler for `cmd`; never rejects. The value is checked to be JSON-safe, not copied. */
export async function runInWorker(cmd: string, payload: unknown): Promise<CommandAnswer> {
  const handler = handlers.get(cmd)
  if (!handler) {
    const message = `no worker handler for "${cmd}" (register it with handleInWorker('${cmd}', ...) in the worker)`
    return { ok: false, error: { code: codes.SHOAL_ERR_UNKNOWN_COMMAND, message } }
  }
  let value: unknown
  try {
    value = await handler(payload)
  } catch (err) {
    return {
      ok: false,
      error: { code: codes.SHOAL_ERR_HANDLER_FAILED, message: `worker handler for "${cmd}" failed: ${errorMessage(err)}` },
    }
  }
  if (value === undefined) return { ok: true, value }
  // Checked, not copied: IPC serializes it once on the way out (a scrape's snapshot is ~60 KB per worker).
  const problem = jsonProblem(value)
  if (problem) {
    const message = `worker handler for "${cmd}" returned a value that cannot be sent: ${problem}`
    return { ok: false, error: { code: codes.SHOAL_ERR_NOT_SERIALIZABLE, message } }
  }
  return { ok: true, value }
}
