import cluster from 'node:cluster'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { trackServer } from './drain.js'
import { codes, ShoalError } from './errors.js'
import { type Logger, textLogger } from './logger.js'
import type { RequestHandler, SharedSnapshot } from './options.js'
import { type PrimaryMessage, parsePrimaryMessage, type SharedEntry, type WorkerMessage } from './protocol.js'
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

let resolveShared: () => void = () => {}
const sharedReadyPromise = new Promise<void>((resolve) => {
  resolveShared = resolve
  if (!supervised) resolve()
})

const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
let nextId = 1

function send(message: WorkerMessage): void {
  if (process.connected && process.send) process.send(message)
}

function apply(name: string, entry: SharedEntry): void {
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
  return apply
}

// ---- lifecycle: serve, drain, exit -------------------------------------------------------------

export interface AttachOptions {
  shutdownTimeoutMs: number
  idleSocketGraceMs: number
  /** Handle SIGINT/SIGTERM when running without a primary. */
  signals: boolean
  /** Without a primary: how long readiness is 503 before the drain starts. */
  readinessDelayMs: number
  logger: Logger
  /** The framework's own close (fastify.close), after the server drained. */
  close?: (() => Promise<void>) | undefined
  onShutdown?: (() => void | Promise<void>) | undefined
}

interface Attached {
  server: Server
  options: AttachOptions
}

const attached: Attached[] = []
let shutdownPromise: Promise<never> | undefined
let signalsInstalled = false

/**
 * Drains every attached server (in-flight requests finish), then runs the framework's close and the
 * app's cleanup, then exits: 0 when everything finished in time, 1 otherwise. Idempotent.
 */
export function shutdownWorker(reason: string, deadlineMs?: number): Promise<never> {
  shutdownPromise ??= (async () => {
    // The primary's deadline wins: it is the one that SIGKILLs after it.
    if (deadlineMs !== undefined) for (const a of attached) a.options = { ...a.options, shutdownTimeoutMs: deadlineMs }
    send({ shoal: 1, type: 'draining' })
    const started = Date.now()
    const first = attached[0]?.options
    if (first) first.logger.debug({ reason, pid: process.pid }, 'draining')
    const results = await Promise.all(attached.map(({ server, options }) => trackServer(server).drain(options)))
    let code = results.every((r) => r === 'drained') ? 0 : 1
    for (const { options } of attached) {
      const left = Math.max(0, options.shutdownTimeoutMs - (Date.now() - started))
      for (const hook of [options.close, options.onShutdown]) {
        if (!hook) continue
        try {
          await withDeadline(Promise.resolve().then(hook), left)
        } catch (err) {
          code = 1
          options.logger.error({ err, pid: process.pid }, 'cleanup failed during shutdown')
        }
      }
    }
    if (code !== 0) first?.logger.warn({ reason, pid: process.pid }, 'shutdown deadline passed, closed remaining connections')
    process.exit(code)
  })()
  return shutdownPromise
}

function withDeadline(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not finish within ${ms} ms`)), ms)
    timer.unref()
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

function installStandaloneSignals(readinessDelayMs: number): void {
  if (signalsInstalled) return
  signalsInstalled = true
  let received = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (received) {
        log.warn({ signal }, 'second signal, exiting now')
        process.exit(signal === 'SIGINT' ? 130 : 143)
      }
      received = true
      markUnready()
      if (readinessDelayMs === 0) {
        void shutdownWorker(signal)
        return
      }
      log.info({ signal, readinessDelayMs }, 'readiness is 503, draining after the readiness delay')
      setTimeout(() => void shutdownWorker(signal), readinessDelayMs)
    })
  }
}

/** Starts tracking a server for graceful drain; call before it listens. Idempotent per server. */
export function attachServer(server: Server, options: AttachOptions): void {
  if (attached.some((a) => a.server === server)) return
  trackServer(server)
  attached.push({ server, options })
  log = options.logger
  if (!supervised && options.signals) installStandaloneSignals(options.readinessDelayMs)
}

export function isDraining(): boolean {
  return shutdownPromise !== undefined
}

let unready = false

/** False once this worker drains, or the cluster told it to stop taking traffic (readiness delay). */
export function isReady(): boolean {
  return !unready && shutdownPromise === undefined
}

/** Readiness turns 503 now; the listener stays open (an orchestrator is moving traffic away). */
export function markUnready(): void {
  unready = true
}

// Event-loop delay, reported to the primary with every heartbeat answer.
const loopDelay = supervised ? monitorEventLoopDelay({ resolution: 20 }) : undefined
loopDelay?.enable()

function pong(seq: number): void {
  const loopDelayMs = loopDelay ? Math.round(loopDelay.mean / 1e4) / 100 : 0
  loopDelay?.reset()
  send({ shoal: 1, type: 'pong', seq, rssBytes: process.memoryUsage.rss(), loopDelayMs: Number.isFinite(loopDelayMs) ? loopDelayMs : 0 })
}

export function formatAddress(address: string | AddressInfo | null): string {
  if (address === null) return 'unknown'
  if (typeof address === 'string') return address
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return `http://${host}:${address.port}`
}

/** Tells the primary why this worker is about to die, so its crash log can say. */
export function reportFatal(message: string): void {
  send({ shoal: 1, type: 'fatal', message })
}

/** Tells the primary this worker listens and is ready for traffic (no-op without a primary). */
export function reportReady(address: string): void {
  send({ shoal: 1, type: 'ready', address })
}

function onPrimaryMessage(raw: unknown): void {
  const message: PrimaryMessage | null = parsePrimaryMessage(raw)
  if (!message) return
  switch (message.type) {
    case 'shared-snapshot':
      for (const [name, entry] of Object.entries(message.entries)) apply(name, entry)
      resolveShared()
      return
    case 'shared-update':
      apply(message.name, message.entry)
      return
    case 'shutdown':
      if (attached.length === 0) process.exit(0)
      void shutdownWorker(message.reason, message.shutdownTimeoutMs)
      return
    case 'response': {
      const waiting = pending.get(message.id)
      if (!waiting) return
      pending.delete(message.id)
      clearTimeout(waiting.timer)
      if (message.ok) waiting.resolve(message.value)
      else waiting.reject(new ShoalError(message.error.code as keyof typeof codes, message.error.message))
      return
    }
    case 'ping':
      pong(message.seq)
      return
    case 'not-ready':
      markUnready()
      return
    default:
      message satisfies never
  }
}

if (supervised) {
  process.on('message', onPrimaryMessage)
  // Ctrl+C reaches the whole process group; the primary coordinates the shutdown over IPC, once.
  process.on('SIGINT', () => {})
  // A SIGTERM aimed at this worker alone drains it; the primary replaces it.
  process.on('SIGTERM', () => {
    if (attached.length === 0) process.exit(0)
    void shutdownWorker('SIGTERM')
  })
  process.on('uncaughtExceptionMonitor', (err) => {
    send({ shoal: 1, type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) })
  })
  send({ shoal: 1, type: 'hello' })
}
