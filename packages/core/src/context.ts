/**
 * The worker's view of the cluster: the one context object every request shares, the shared-values
 * snapshot, and requests to the primary. Without a primary, the same API is served in-process.
 */
import cluster from 'node:cluster'
import { setMaxListeners } from 'node:events'
import { answerCommand, type CommandAnswer } from './dispatch.js'
import { codes, ShoalError, type ShoalErrorCode } from './errors.js'
import { bindLogger, type Logger, textLogger } from './logger.js'
import type { RequestHandler, SharedSnapshot } from './options.js'
import type { PrimaryMessage, SharedEntry, WorkerMessage } from './protocol.js'
import { deepFreeze, encodeJson } from './serialize.js'
import type { DrainReason } from './upgrade.js'

// Kept importable from here for the modules that always did.

/** Options for `request.cluster.request`. */
export interface RequestOptions {
  /**
   * Reject with `SHOAL_ERR_REQUEST_TIMEOUT` when the primary has not answered by then.
   * @default 5000
   */
  timeoutMs?: number
}

/** The per-worker context, the same object for every request: `request.cluster` / `req.cluster`. */
export interface ClusterContext {
  /** node:cluster's worker id (unique per fork, from 1); `0` when running without a primary. */
  readonly workerId: number
  /** Stable slot index, reused when this slot's worker is replaced; `0` without a primary. */
  readonly slot: number
  readonly pid: number
  /** The latest frozen snapshot of the primary's shared values, replaced atomically on each update. */
  readonly shared: SharedSnapshot
  /**
   * Ask the primary; answered by the `handlers` option. Rejects with `ShoalError` on timeout, unknown
   * command, handler error, a payload or result that cannot cross IPC, or a closed IPC channel.
   */
  request<T = unknown>(cmd: string, payload?: unknown, options?: RequestOptions): Promise<T>
  /**
   * Aborts when this worker starts draining, with `reason` `'reload'` (it is being replaced while the
   * cluster keeps running: a rolling reload, the memory ceiling, a SIGTERM to this worker, an uncaught
   * exception) or `'shutdown'` (the cluster, or a single process, is stopping). Long-lived responses
   * (server-sent events, long polls, streams) listen to it and end cleanly, telling the client to
   * reconnect, instead of being cut at the deadline. Pass it to `fetch`, `setTimeout` of
   * `node:timers/promises`, `stream.pipeline`, or remove your listener when the response closes.
   * @example
   * req.cluster.draining.addEventListener('abort', () => res.end('event: reconnect\ndata: {}\n\n'), { once: true })
   */
  readonly draining: AbortSignal
}

export type SharedListener = (name: string, snapshot: SharedSnapshot) => void

/** True in a worker forked by a shoal primary. */
export const supervised = cluster.isWorker && process.env.SHOAL_WORKER_INDEX !== undefined

const EMPTY = Object.freeze({}) as SharedSnapshot
let snapshot: SharedSnapshot = EMPTY
const meta = new Map<string, { version: number; updatedAt: number }>()
const listeners = new Set<SharedListener>()
let localHandlers: Record<string, RequestHandler> = {}

/** What every line a worker logs through shoal carries (pid comes from the logger itself). */
function workerBindings(): Record<string, unknown> {
  return {
    workerId: cluster.worker?.id ?? 0,
    slot: Number(process.env.SHOAL_WORKER_INDEX ?? 0),
    generation: Number(process.env.SHOAL_GENERATION ?? 0),
  }
}

const bind = (logger: Logger): Logger => (supervised ? bindLogger(logger, workerBindings()) : logger)
let log: Logger = bind(textLogger())

/** The logger of the app, once it handed one over; in a worker, bound to its workerId, slot and generation. */
export function setLogger(logger: Logger): Logger {
  log = bind(logger)
  return log
}

/**
 * The logger shoal uses in this process: the app's (`logger` option) or its own. In a worker every
 * line carries `workerId`, `slot`, `pid` and `generation`.
 * @example getLogger().info({ userId }, 'signed in')
 */
export function getLogger(): Logger {
  return log
}

let resolveShared: () => void = () => {}
const sharedReadyPromise = new Promise<void>((resolve) => {
  resolveShared = resolve
  if (!supervised) resolve()
})

const pending = new Map<number, { cmd: string; resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
let nextId = 1

/** Sends to the primary; a no-op without one, or once the channel closed. */
export function send(message: WorkerMessage): void {
  if (process.connected && process.send) process.send(message)
}

/** Takes a shared value from the primary (or the in-process store); stale versions are ignored. */
export function applyShared(name: string, entry: SharedEntry): void {
  const known = meta.get(name)
  if (known && known.version >= entry.version) return
  meta.set(name, { version: entry.version, updatedAt: entry.updatedAt })
  snapshot = Object.freeze({ ...snapshot, [name]: deepFreeze(entry.value) }) as SharedSnapshot
  for (const listener of listeners) {
    try {
      listener(name, snapshot)
    } catch (err) {
      log.error({ err }, 'shared value listener threw')
    }
  }
}

/** In-process mode: the primary's dispatcher, run here, on the payload as it would arrive over IPC. */
async function askLocally(cmd: string, payloadJson: string | undefined): Promise<unknown> {
  const payload = payloadJson === undefined ? undefined : JSON.parse(payloadJson)
  return settle(await answerCommand(localHandlers, {}, cmd, payload, { slot: 0, workerId: 0, pid: process.pid }, log))
}

function settle(answer: CommandAnswer): unknown {
  if (answer.ok) return answer.value
  throw new ShoalError(answer.error.code as ShoalErrorCode, answer.error.message)
}

function channelClosed(cmd: string): ShoalError {
  return new ShoalError(
    codes.SHOAL_ERR_CHANNEL_CLOSED,
    `cannot ask the primary "${cmd}": this worker's IPC channel to the primary is closed (disconnected, or the primary is gone)`,
  )
}

function request<T>(cmd: string, payload?: unknown, options: RequestOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000
  // Checked here, before anything is sent, with the primary's own check: in-process mode fails alike.
  const encoded = payload === undefined ? undefined : encodeJson(payload)
  if (encoded && !encoded.ok) {
    return Promise.reject(new ShoalError(codes.SHOAL_ERR_NOT_SERIALIZABLE, `payload for "${cmd}" cannot be sent: ${encoded.problem}`))
  }
  if (!supervised) return askLocally(cmd, encoded?.json) as Promise<T>
  // Nothing sent now could be answered: fail at once rather than after the full timeout.
  if (!process.connected) return Promise.reject(channelClosed(cmd))
  return new Promise<T>((resolve, reject) => {
    const id = nextId++
    const timer = setTimeout(() => {
      pending.delete(id)
      reject(new ShoalError(codes.SHOAL_ERR_REQUEST_TIMEOUT, `primary did not answer "${cmd}" within ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    pending.set(id, { cmd, resolve: resolve as (v: unknown) => void, reject, timer })
    // The checked copy, so what is sent is what was checked (a getter may answer differently twice).
    send({ shoal: 1, type: 'request', id, cmd, payload: encoded && JSON.parse(encoded.json) })
  })
}

/** The channel closed: no answer can arrive any more, so every waiting request fails now. */
function rejectPending(): void {
  for (const [id, waiting] of pending) {
    pending.delete(id)
    clearTimeout(waiting.timer)
    waiting.reject(channelClosed(waiting.cmd))
  }
}

if (supervised) process.on('disconnect', rejectPending)

const drainController = new AbortController()
// Every open stream of this worker may listen: thousands of listeners are expected, not a leak.
setMaxListeners(0, drainController.signal)

/** Aborts `context.draining` with the drain's reason; once. */
export function abortDraining(reason: DrainReason): void {
  if (!drainController.signal.aborted) drainController.abort(reason)
}

export const context: ClusterContext = Object.freeze({
  workerId: supervised ? (cluster.worker?.id ?? 0) : 0,
  slot: supervised ? Number(process.env.SHOAL_WORKER_INDEX) : 0,
  pid: process.pid,
  get shared() {
    return snapshot
  },
  request,
  draining: drainController.signal,
})

/** The current shared snapshot, outside a request. */
export function getShared(): SharedSnapshot {
  return snapshot
}

/** Version and time of the last update of one shared value, or undefined if it never arrived. */
export function getSharedInfo(name: string): { version: number; updatedAt: number } | undefined {
  return meta.get(name)
}

/** Calls `listener` after every change of a shared value. Returns the unsubscribe function. */
export function onSharedChange(listener: SharedListener): () => void {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

/** Resolves once this worker holds the primary's current snapshot (at once without a primary). */
export function sharedReady(): Promise<void> {
  return sharedReadyPromise
}

/** In-process mode: the primary's roles played locally. */
export function runLocally(handlers: Record<string, RequestHandler>, logger: Logger): (name: string, entry: SharedEntry) => void {
  localHandlers = handlers
  log = logger
  return applyShared
}

/** Resolves the snapshot wait: the primary's first snapshot arrived. */
export function sharedArrived(): void {
  resolveShared()
}

/** Settles a pending `request()` with the primary's answer. */
export function settleResponse(message: Extract<PrimaryMessage, { type: 'response' }>): void {
  const waiting = pending.get(message.id)
  if (!waiting) return
  pending.delete(message.id)
  clearTimeout(waiting.timer)
  try {
    waiting.resolve(settle(message))
  } catch (err) {
    waiting.reject(err as ShoalError)
  }
}
