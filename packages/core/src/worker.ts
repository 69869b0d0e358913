/**
 * The worker's lifecycle: attach servers for graceful drain, answer the primary (shutdown, ping,
 * readiness), report ready, and exit with a code that says whether everything drained in time.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { applyShared, getLogger, send, setLogger, settleResponse, sharedArrived, supervised } from './context.js'
import { trackServer } from './drain.js'
import type { Logger } from './logger.js'
import { type PrimaryMessage, parsePrimaryMessage } from './protocol.js'

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
    send({ shoal: 1, type: 'draining', deadlineMs: attached[0]?.options.shutdownTimeoutMs ?? 0, fatal: false })
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
        getLogger().warn({ signal }, 'second signal, exiting now')
        process.exit(signal === 'SIGINT' ? 130 : 143)
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
  attached.push({ server, options })
  setLogger(options.logger)
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
      for (const [name, entry] of Object.entries(message.entries)) applyShared(name, entry)
      sharedArrived()
      return
    case 'shared-update':
      applyShared(message.name, message.entry)
      return
    case 'shutdown':
      if (attached.length === 0) process.exit(0)
      void shutdownWorker(message.reason, message.shutdownTimeoutMs)
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
