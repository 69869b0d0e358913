/**
 * The worker's view of the cluster: the one context object every request shares, the shared-values
 * snapshot, and requests to the primary. Without a primary, the same API is served in-process.
 */
import cluster from 'node:cluster'
import { codes, ShoalError } from './errors.js'
import { type Logger, textLogger } from './logger.js'
import type { RequestHandler, SharedSnapshot } from './options.js'
import type { PrimaryMessage, SharedEntry, WorkerMessage } from './protocol.js'
import { deepFreeze, jsonProblem } from './serialize.js'

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
  /** Ask the primary; answered by the `handlers` option. Rejects with `ShoalError` on timeout, unknown command or handler error. */
  request<T = unknown>(cmd: string, payload?: unknown, options?: RequestOptions): Promise<T>
}

export type SharedListener = (name: string, snapshot: SharedSnapshot) => void

/** True in a worker forked by a shoal primary. */
export const supervised = cluster.isWorker && process.env.SHOAL_WORKER_INDEX !== undefined

const EMPTY = Object.freeze({}) as SharedSnapshot
let snapshot: SharedSnapshot = EMPTY
const meta = new Map<string, { version: number; updatedAt: number }>()
const listeners = new Set<SharedListener>()
let localHandlers: Record<string, RequestHandler> = {}
let log: Logger = textLogger()

/** The logger of the app, once it handed one over. */
export function setLogger(logger: Logger): void {
  log = logger
}

export function getLogger(): Logger {
  return log
}

let resolveShared: () => void = () => {}
const sharedReadyPromise = new Promise<void>((resolve) => {
  resolveShared = resolve
  if (!supervised) resolve()
})

const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
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

async function askLocally(cmd: string, payload: unknown): Promise<unknown> {
  const handler = localHandlers[cmd]
  if (!handler) throw unknownCommand(cmd)
  let value: unknown
  try {
    value = await handler(payload, { slot: 0, workerId: 0, pid: process.pid })
  } catch (err) {
    throw new ShoalError(codes.SHOAL_ERR_HANDLER_FAILED, `handler for "${cmd}" failed: ${errorMessage(err)}`, { cause: err })
  }
  // The same JSON round trip as over IPC, so in-process mode behaves like the cluster.
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value))
}

export function unknownCommand(cmd: string): ShoalError {
  return new ShoalError(codes.SHOAL_ERR_UNKNOWN_COMMAND, `no handler for command "${cmd}" (add it to the \`handlers\` option)`)
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function request<T>(cmd: string, payload?: unknown, options: RequestOptions = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000
  const problem = payload === undefined ? null : jsonProblem(payload)
  if (problem) return Promise.reject(new ShoalError(codes.SHOAL_ERR_NOT_SERIALIZABLE, `payload for "${cmd}" cannot be sent: ${problem}`))
  if (!supervised) return askLocally(cmd, payload) as Promise<T>
  return new Promise<T>((resolve, reject) => {
    const id = nextId++
    const timer = setTimeout(() => {
      pending.delete(id)
      reject(new ShoalError(codes.SHOAL_ERR_REQUEST_TIMEOUT, `primary did not answer "${cmd}" within ${timeoutMs} ms`))
    }, timeoutMs)
    timer.unref()
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
    send({ shoal: 1, type: 'request', id, cmd, payload })
  })
}

export const context: ClusterContext = Object.freeze({
  workerId: supervised ? (cluster.worker?.id ?? 0) : 0,
  slot: supervised ? Number(process.env.SHOAL_WORKER_INDEX) : 0,
  pid: process.pid,
  get shared() {
    return snapshot
  },
  request,
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
  if (message.ok) waiting.resolve(message.value)
  else waiting.reject(new ShoalError(message.error.code as keyof typeof codes, message.error.message))
}
