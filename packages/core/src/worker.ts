/**
 * The worker's lifecycle: attach servers for graceful drain, answer the primary (shutdown, ping,
 * readiness), report ready, and exit. This module is the one place that ends the process (`exit`):
 * the drain, the adapters and `run.ts` resolve to outcomes and leave the exit code to it.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { abortDraining, applyShared, context, getLogger, send, setLogger, settleResponse, sharedArrived, supervised } from './context.js'
import { trackServer } from './drain.js'
import { hasInWorker, runInWorker } from './in-worker.js'
import { flushLogger, type Logger } from './logger.js'
import { type PrimaryMessage, parsePrimaryMessage } from './protocol.js'
import type { DrainReason } from './upgrade.js'

export interface AttachOptions {
  shutdownTimeoutMs: number
  idleSocketGraceMs: number
  /** Upgraded connections are closed spread over this window (jittered), inside the deadline. */
  webSocketCloseWindowMs: number
  /** Handle SIGINT/SIGTERM when running without a primary. */
  signals: boolean
  /** Without a primary: how long readiness is 503 before the drain starts. */
  readinessDelayMs: number
  /** An uncaught exception or unhandled rejection drains this process and exits 1. */
  drainOnUncaught: boolean
  logger: Logger
  /** The framework's own close (fastify.close), after the server drained. */
  close?: (() => Promise<void>) | undefined
  onShutdown?: (() => void | Promise<void>) | undefined
}

interface Attached {
  server: Server
  options: AttachOptions
}

/** How a drain ended: what the exit code is made of. */
export interface DrainOutcome {
  /** Every server finished its in-flight requests before the deadline. */
  drained: boolean
  /** Every cleanup hook (the framework's close, `onShutdown`) finished in its time. */
  cleanedUp: boolean
  /** An uncaught exception or unhandled rejection started the drain, or happened during it. */
  fatal: boolean
}

/**
 * The least time cleanup hooks get, even after a drain that used up its whole deadline: a pool's
 * `end()` needs a moment, and 0 ms only ever reports failure. 1 s fits inside the primary's 2 s
 * SIGKILL margin with a second to spare for exiting on a loaded machine; a deadline shorter than
 * that caps it (a 100 ms drain does not get a 1 s cleanup).
 */
export const CLEANUP_BUDGET_MS = 1000

export function cleanupBudgetMs(shutdownTimeoutMs: number): number {
  return Math.min(CLEANUP_BUDGET_MS, shutdownTimeoutMs)
}

/** 0 only when everything drained and cleaned up in time and nothing was uncaught. */
export function exitCodeFor(outcome: DrainOutcome): 0 | 1 {
  return outcome.drained && outcome.cleanedUp && !outcome.fatal ? 0 : 1
}

const attached: Attached[] = []
let drainPromise: Promise<DrainOutcome> | undefined
let exitPromise: Promise<never> | undefined
let uncaughtDuringDrain = false
let signalsInstalled = false
let uncaughtInstalled = false

let exiting = false

/**
 * The one place shoal ends a worker or a single process. Says why as its last line, and lets the
 * logger write out what it buffered (the app's pino on an async destination) before the process
 * ends: the lines that say why are the ones an abrupt exit loses. A clean exit only logs at debug.
 */
function exit(code: number, reason: string): void {
  if (exiting) return
  exiting = true
  const log = getLogger()
  if (code === 0) log.debug({ code }, `exiting 0: ${reason}`)
  else log.warn({ code }, `exiting ${code}: ${reason}`)
  flushLogger(log, () => process.exit(code))
}

function exitReason(reason: string, outcome: DrainOutcome): string {
  if (outcome.fatal) return `${reason}; an uncaught exception`
  if (!outcome.drained) return `${reason}; the shutdown deadline passed with requests in flight`
  if (!outcome.cleanedUp) return `${reason}; cleanup failed`
  return `${reason}; drained`
}

/**
 * The one place a drain's cause becomes `context.draining.reason` and the WebSocket close code
 * (1012 / 1001). `restart` is the primary's word: true when it replaces this worker while the cluster
 * keeps running (rolling reload, memory ceiling, a SIGTERM to this worker, a stuck one), false when
 * the cluster stops (SIGTERM/SIGINT to the primary, `shutdown()`, the crash-loop breaker). Without
 * it, a worker draining by itself (a SIGTERM the primary did not answer, an uncaught exception,
 * `handle.close()`) is a reload, since the primary replaces it; a single process is a shutdown,
 * since nothing here replaces it.
 */
export function drainReasonFor(restart: boolean | undefined, underPrimary: boolean = supervised): DrainReason {
  return (restart ?? underPrimary) ? 'reload' : 'shutdown'
}

export interface DrainWorkerOptions {
  deadlineMs?: number | undefined
  fatal?: boolean
  /** The primary replaces this worker and the cluster keeps running (see `drainReasonFor`). */
  restart?: boolean | undefined
}

/**
 * Drains every attached server (in-flight requests finish, upgraded connections are closed spread
 * over their window), then runs the framework's close and the app's cleanup, and makes sure no
 * connection is still on its way from the primary. Resolves to the outcome; never exits. Idempotent:
 * the first call's reason and deadline win.
 */
export function drainWorker(reason: string, { deadlineMs, fatal = false, restart }: DrainWorkerOptions = {}) {
  drainPromise ??= (async (): Promise<DrainOutcome> => {
    const drainReason = drainReasonFor(restart)
    // First: long-lived responses learn it while there is the most time left to end cleanly.
    abortDraining(drainReason)
    // The primary's deadline wins: it is the one that SIGKILLs after it.
    if (deadlineMs !== undefined) for (const a of attached) a.options = { ...a.options, shutdownTimeoutMs: deadlineMs }
    const timeoutMs = Math.max(0, ...attached.map((a) => a.options.shutdownTimeoutMs))
    send({ shoal: 1, type: 'draining', deadlineMs: timeoutMs, fatal })
    const started = Date.now()
    getLogger().debug({ reason, pid: process.pid }, 'draining')
    const drains = attached.map(({ server, options }) => trackServer(server).drain({ ...options, reason: drainReason }))
    // Every server stopped listening just now; the primary may still have connections on their way here.
    const synced = syncWithPrimary(timeoutMs)
    const drained = (await Promise.all(drains)).every((r) => r === 'drained')
    // Cleanup gets what is left of the deadline, and never less than its budget.
    const cleanupUntil = Math.max(started + timeoutMs, Date.now() + cleanupBudgetMs(timeoutMs))
    // Every request was answered: the metrics now hold their final values. Sent beside the cleanup, in its time.
    const handedOver = handOverFinalValues(cleanupUntil - Date.now())
    let cleanedUp = true
    for (const { options } of attached) {
      for (const hook of [options.close, options.onShutdown]) {
        if (!hook) continue
        try {
          await withDeadline(Promise.resolve().then(hook), Math.max(0, cleanupUntil - Date.now()))
        } catch (err) {
          cleanedUp = false
          options.logger.error({ err, pid: process.pid }, 'cleanup failed during shutdown')
        }
      }
    }
    await synced
    await handedOver
    logUpgradeCloses(reason, drainReason)
    if (!drained) getLogger().warn({ reason, pid: process.pid }, 'shutdown deadline passed, closed remaining connections')
    return { drained, cleanedUp, fatal: fatal || uncaughtDuringDrain }
  })()
  return drainPromise
}

/** The drain's line about upgraded connections: how many, with which code, how; only when there were any. */
function logUpgradeCloses(reason: string, drainReason: DrainReason): void {
  const total = { code: 0, byCloser: 0, byFrame: 0, destroyed: 0, cutAtDeadline: 0 }
  for (const { server } of attached) {
    const c = trackServer(server).upgradeCloses
    total.code ||= c.code
    total.byCloser += c.byCloser
    total.byFrame += c.byFrame
    total.destroyed += c.destroyed
    total.cutAtDeadline += c.cutAtDeadline
  }
  const closed = total.byCloser + total.byFrame + total.destroyed
  if (closed + total.cutAtDeadline === 0) return
  const fields = { reason, drainReason, pid: process.pid, upgraded: { closed, ...total } }
  const line = `closed ${closed} upgraded connection(s) with ${total.code} (${total.byCloser} by their closer, ${total.byFrame} by a close frame, ${total.destroyed} destroyed), ${total.cutAtDeadline} cut at the deadline`
  if (total.cutAtDeadline > 0) getLogger().warn(fields, line)
  else getLogger().info(fields, line)
}

/** Open upgraded connections (WebSocket) across this worker's servers. */
export function upgradedCount(): number {
  let count = 0
  for (const { server } of attached) count += trackServer(server).upgraded
  return count
}

/**
 * A draining worker's last round trip, bounded by its deadline. IPC is ordered: once the primary
 * answers, every connection it handed over before it saw this worker stop listening has been read
 * here, and answered `accepted: false` by node:cluster so the primary hands it to another worker. A
 * worker that exits before reading one leaves its client hanging forever (nodejs/node#21746).
 */
async function syncWithPrimary(timeoutMs: number): Promise<void> {
  if (!supervised || !process.connected) return
  try {
    await context.request('shoal:sync', undefined, { timeoutMs: Math.max(1, timeoutMs) })
  } catch (err) {
    getLogger().warn({ err, pid: process.pid }, 'the primary did not answer the drain sync; exiting anyway')
  }
}

/**
 * Hands this worker's final metric values (`handleInWorker('shoal:metrics', ...)`, registered by
 * @shoal/metrics) to the primary and waits for its answer, so the counts of the last requests are
 * folded into the cluster's totals before the process ends. Nothing to do without a primary, or
 * when no metrics were registered; bounded by `timeoutMs`.
 */
async function handOverFinalValues(timeoutMs: number): Promise<void> {
  if (!supervised || !process.connected || !hasInWorker('shoal:metrics')) return
  const collected = await runInWorker('shoal:metrics', undefined)
  if (!collected.ok) {
    getLogger().warn({ pid: process.pid, err: collected.error }, 'could not collect the final metric values')
    return
  }
  try {
    await context.request('shoal:metrics-final', collected.value, { timeoutMs: Math.max(1, timeoutMs) })
  } catch (err) {
    getLogger().warn({ err, pid: process.pid }, 'the primary did not take the final metric values; it keeps the last ones it collected')
  }
}

/** Drains (`drainWorker`), then exits: 0 when everything finished in time, 1 otherwise. Idempotent. */
export function shutdownWorker(reason: string, options: DrainWorkerOptions = {}): Promise<never> {
  exitPromise ??= drainWorker(reason, options).then((outcome) => {
    exit(exitCodeFor(outcome), exitReason(reason, outcome))
    return new Promise<never>(() => {})
  })
  return exitPromise
}

function withDeadline(promise: Promise<unknown>, ms: number): Promise<unknown> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not finish within ${ms} ms`)), ms)
    timer.unref()
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

function stackOf(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err)
}

/**
 * One request's bug must not reset every other request of this process: log it, tell the primary,
 * drain like a reload (fatal, so exit 1), and let the primary replace this worker. Once draining,
 * a further one is only logged; it makes the exit code 1.
 */
function onUncaught(what: 'uncaught exception' | 'unhandled rejection', err: unknown): void {
  const fields = { pid: process.pid, slot: context.slot, err }
  if (drainPromise) {
    uncaughtDuringDrain = true
    getLogger().error(fields, `${what} while draining`)
    return
  }
  getLogger().error(fields, `${what}, draining and exiting 1`)
  reportFatal(stackOf(err))
  void shutdownWorker(what, { fatal: true })
}

function installUncaughtHandlers(): void {
  if (uncaughtInstalled) return
  uncaughtInstalled = true
  process.on('uncaughtException', (err) => onUncaught('uncaught exception', err))
  process.on('unhandledRejection', (reason) => onUncaught('unhandled rejection', reason))
}

function installStandaloneSignals(readinessDelayMs: number): void {
  if (signalsInstalled) return
  signalsInstalled = true
  let received = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (received) {
        exit(signal === 'SIGINT' ? 130 : 143, `second ${signal}, exiting now`)
        return
      }
      received = true
      markUnready()
      if (readinessDelayMs === 0) {
        void shutdownWorker(signal)
        return
      }
      getLogger().info({ signal, readinessDelayMs }, 'readiness is 503, draining after the readiness delay')
      setTimeout(() => void shutdownWorker(signal), readinessDelayMs)
    })
  }
}

/** Starts tracking a server for graceful drain; call before it listens. Idempotent per server. */
export function attachServer(server: Server, options: AttachOptions): void {
  if (attached.some((a) => a.server === server)) return
  trackServer(server)
  // In a worker, every line (shoal's and the cleanup hooks' errors) carries workerId, slot and generation.
  attached.push({ server, options: { ...options, logger: setLogger(options.logger) } })
  if (!supervised && options.signals) installStandaloneSignals(options.readinessDelayMs)
  if (options.drainOnUncaught) installUncaughtHandlers()
}

export function isDraining(): boolean {
  return drainPromise !== undefined
}

let unready = false

/** False once this worker drains, or the cluster told it to stop taking traffic (readiness delay). */
export function isReady(): boolean {
  return !unready && drainPromise === undefined
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
  send({
    shoal: 1,
    type: 'pong',
    seq,
    rssBytes: process.memoryUsage.rss(),
    loopDelayMs: Number.isFinite(loopDelayMs) ? loopDelayMs : 0,
    upgraded: upgradedCount(),
  })
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

/**
 * The server could not listen: tell the primary (it says why, once, and stops the cluster while it
 * starts: a respawn cannot free a port) and exit 1 without a stack of our own.
 */
export function failListen(code: string, message: string): Promise<never> {
  send({ shoal: 1, type: 'listen-failed', code, message })
  exit(1, `listen failed (${code}); the primary says why`)
  return new Promise<never>(() => {})
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
      for (const [name, entry] of Object.entries(message.entries)) applyShared(name, entry)
      sharedArrived()
      return
    case 'shared-update':
      applyShared(message.name, message.entry)
      return
    case 'shutdown':
      if (attached.length === 0) {
        exit(0, `${message.reason}; no server to drain`)
        return
      }
      void shutdownWorker(message.reason, { deadlineMs: message.shutdownTimeoutMs, restart: message.restart })
      return
    case 'response':
      settleResponse(message)
      return
    case 'ping':
      pong(message.seq)
      return
    case 'not-ready':
      markUnready()
      return
    case 'ask': {
      const { id } = message
      void runInWorker(message.cmd, message.payload).then((answer) => send({ shoal: 1, type: 'answer', id, ...answer }))
      return
    }
    default:
      message satisfies never
  }
}

if (supervised) {
  process.on('message', onPrimaryMessage)
  // Ctrl+C reaches the whole process group; the primary coordinates the shutdown over IPC, once.
  process.on('SIGINT', () => {})
  // A SIGTERM aimed at this worker alone: it asks the primary for its replacement first and keeps
  // serving (readiness 503) until that one is ready, then gets the usual shutdown message — so even
  // a single worker's port never refuses a connection. On any other answer, or none, or a second
  // SIGTERM, it drains by itself. The primary answers within its readyTimeoutMs.
  let handover: Promise<unknown> | undefined
  process.on('SIGTERM', () => {
    if (attached.length === 0) {
      exit(0, 'SIGTERM; no server to drain')
      return
    }
    if (handover) {
      void shutdownWorker('SIGTERM')
      return
    }
    markUnready()
    const timeoutMs = Number(process.env.SHOAL_READY_TIMEOUT_MS ?? 30_000) + 5000
    handover = context
      .request('shoal:replace-me', undefined, { timeoutMs })
      .catch(() => {})
      .then(() => shutdownWorker('SIGTERM'))
  })
  // Without shoal's own handlers (drainOnUncaught: false), Node or the app's handler decides; the
  // primary still learns why the worker is likely about to die.
  process.on('uncaughtExceptionMonitor', (err) => {
    if (!uncaughtInstalled) reportFatal(stackOf(err))
  })
  send({ shoal: 1, type: 'hello' })
}
