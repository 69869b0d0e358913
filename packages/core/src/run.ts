import cluster from 'node:cluster'
import type { Server } from 'node:http'
import { pathToFileURL } from 'node:url'
import { BALANCING_ENV, listenOnOwnSocket } from './balancing.js'
import { runLocally, sharedReady, supervised } from './context.js'
import { codes, errorMessage, invalidOption, ShoalError } from './errors.js'
import { askInProcess, Jobs } from './jobs.js'
import { type ClusterOptions, type ResolvedOptions, resolveOptions, WORKER_SIDE_NAMES } from './options.js'
import { Primary } from './primary.js'
import { SharedStore } from './shared.js'
import { attachServer, failListen, formatAddress, reportReady, shutdownWorker } from './worker.js'

/** What `runCluster` / `clusteredListen` resolve to in a worker, or in a single process (`workers: 0`). */
export interface WorkerHandle {
  /** `'worker'` under a shoal primary, `'single'` without one. */
  readonly role: 'worker' | 'single'
  /** Where the server listens, e.g. `http://127.0.0.1:3000`. */
  readonly address: string
  /** Drains this process's server, runs cleanup hooks, and exits the process (0 when all finished in time, else 1). */
  close(): Promise<never>
}

/** In the primary a `Primary`; in a worker or a single process a `WorkerHandle`. */
export type ClusterHandle = Primary | WorkerHandle

/** The worker's part, supplied by an adapter: create the server, listen, and the framework's close. */
export interface WorkerMain {
  server: Server
  /** Starts listening. Called after the primary's shared values arrived. */
  listen(): Promise<unknown>
  /** The framework's own close, run after the server drained (Fastify's `onClose` hooks). */
  close?: () => Promise<void>
}

let singleStarted = false
/** Where runCluster was first called in this process, for the error a second call gets. */
let firstCall: string | undefined

/**
 * Runs the cluster. In the primary: validates options, computes shared values, forks `workers` of
 * `exec` (or of `main`'s script), supervises them, and resolves to the `Primary` once each is ready.
 * In a worker: runs `main` and resolves once it listens and the primary was told. With `workers: 0`:
 * runs everything in this process.
 */
export async function runCluster(options: ClusterOptions = {}, main?: () => WorkerMain | Promise<WorkerMain>): Promise<ClusterHandle> {
  const opts = resolveOptions(options)
  if (firstCall !== undefined)
    throw new ShoalError(
      codes.SHOAL_ERR_ALREADY_STARTED,
      `clusteredListen() / runCluster() was already called in this process (first at ${firstCall}); call it once, for one server`,
    )
  firstCall = callSite()
  try {
    return await run(opts, main)
  } catch (err) {
    firstCall = undefined // a start that failed (a port in use) may be retried
    throw err
  }
}

async function run(opts: ResolvedOptions, main: (() => WorkerMain | Promise<WorkerMain>) | undefined): Promise<ClusterHandle> {
  if (supervised) {
    if (!main)
      throw new ShoalError(
        codes.SHOAL_ERR_INVALID_OPTION,
        'runCluster() in a worker needs the worker part; call serve(server, ...) from the worker script instead',
      )
    return serveMain(await main(), opts)
  }
  if (cluster.isPrimary && opts.workers > 0) return new Primary(opts).start()
  await startSingle(opts)
  if (main) return serveMain(await main(), opts)
  await import(pathToFileURL(opts.exec).href)
  return { role: 'single', address: 'unknown', close: () => shutdownWorker('api') }
}

/** The first stack frame outside shoal's own packages and Node's internals: the user's call. */
function callSite(): string {
  const own = /[\\/](?:@shoal|packages)[\\/](?:core|express|fastify)[\\/]dist[\\/]|\(node:|at node:/
  const frame = (new Error().stack ?? '')
    .split('\n')
    .slice(1)
    .find((line) => !own.test(line))
  const where = frame?.match(/\((.*)\)\s*$/)?.[1] ?? frame?.trim().replace(/^at (?:async )?/, '')
  return where ?? 'unknown'
}

/**
 * The adapters' port argument, checked before anything forks: `3000`, `'3000'` (`process.env.PORT`)
 * or an options object (`{ port, host }`). Anything else throws SHOAL_ERR_INVALID_OPTION naming `port`.
 * @example listenOptionsFrom(process.env.PORT) // { port: 3000 }
 */
export function listenOptionsFrom<T extends object>(value: number | string | T | undefined): T | { port: number } {
  if (typeof value === 'number' || (typeof value === 'string' && /^\d+$/.test(value))) {
    const port = Number(value)
    if (Number.isInteger(port) && port <= 65535) return { port }
  } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value
  throw invalidOption('port', 'a port number (0 to 65535), a string of digits (process.env.PORT) or { port, host }', value)
}

/**
 * The primary without starting it, for code that wants every event from the first fork on:
 * `const primary = createPrimary(opts); primary.on('fork', ...); await primary.start()`.
 */
export function createPrimary(options: ClusterOptions = {}): Primary {
  return new Primary(resolveOptions(options))
}

/** `workers: 0` or no primary: compute shared values here and answer requests in-process. */
async function startSingle(opts: ResolvedOptions): Promise<void> {
  if (singleStarted) return
  singleStarted = true
  const apply = runLocally(opts.handlers, opts.logger)
  const store = new SharedStore(opts.shared, opts.logger, apply)
  await store.start()
  // This process is the cluster: jobs run here, and `job.inWorker` answers here.
  await new Jobs(opts.jobs, opts.logger, askInProcess).start()
}

async function serveMain(main: WorkerMain, opts: ResolvedOptions): Promise<WorkerHandle> {
  await sharedReady()
  attachServer(main.server, {
    shutdownTimeoutMs: opts.shutdownTimeoutMs,
    idleSocketGraceMs: opts.idleSocketGraceMs,
    signals: opts.signals,
    readinessDelayMs: opts.readinessDelayMs,
    drainOnUncaught: opts.drainOnUncaught,
    webSocketCloseWindowMs: opts.webSocketCloseWindowMs,
    logger: opts.logger,
    close: main.close,
    onShutdown: opts.onShutdown,
  })
  if (supervised && process.env[BALANCING_ENV] === 'reuse-port') listenOnOwnSocket(main.server)
  try {
    await main.listen()
  } catch (err) {
    const { code, message } = listenError(err)
    // The primary says why, once, and gives up while it starts: no respawn frees a port.
    if (supervised) return failListen(code, message)
    throw new ShoalError(codes.SHOAL_ERR_LISTEN, message, { cause: err })
  }
  const address = formatAddress(main.server.address())
  if (supervised) reportReady(address)
  else opts.logger.info({ address, pid: process.pid }, 'listening (single process)')
  return { role: supervised ? 'worker' : 'single', address, close: () => shutdownWorker('api') }
}

/** "port 3000 is already in use (127.0.0.1:3000)" from a listen error (node:net's, or node:cluster's bind error in a worker, which has no address when no host was given). */
export function listenError(err: unknown): { code: string; message: string } {
  const e = (err ?? {}) as { code?: unknown; port?: unknown; address?: unknown }
  const code = typeof e.code === 'string' ? e.code : 'UNKNOWN'
  const port = typeof e.port === 'number' ? e.port : undefined
  const where = typeof e.address === 'string' ? ` (${e.address}:${port})` : ''
  if (port !== undefined && code === 'EADDRINUSE') return { code, message: `port ${port} is already in use${where}` }
  if (port !== undefined && code === 'EACCES') return { code, message: `no permission to listen on port ${port}${where}` }
  return { code, message: `could not listen: ${errorMessage(err)}` }
}

export interface ListenOptions {
  /** @default 0 (a free port) */
  port?: number
  /** @default all interfaces */
  host?: string
  backlog?: number
}

/** `server.listen` as a Promise that rejects on EADDRINUSE, EACCES, ... */
export function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port: options.port ?? 0, host: options.host, backlog: options.backlog }, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/** The options that shape a worker's (or a single process's) drain: what `serve` and `attachToServer` take. */
export type WorkerSideOptions = Pick<ClusterOptions, (typeof WORKER_SIDE_NAMES)[number]>

/** Picks the worker-side options out of a larger object (cluster options, a plugin's options). */
export function workerSideOptions(options: object): WorkerSideOptions {
  const source = options as Record<string, unknown>
  const out: Record<string, unknown> = {}
  for (const key of WORKER_SIDE_NAMES) if (source[key] !== undefined) out[key] = source[key]
  return out as WorkerSideOptions
}

/**
 * Hands a server that is already created (and maybe listening) to shoal's drain: SIGINT/SIGTERM in a
 * single process, the primary's shutdown in a worker. `close` is the framework's own close, run after
 * the drain. The first call for a server wins; later calls are no-ops.
 */
export function attachToServer(server: Server, options: WorkerSideOptions = {}, close?: () => Promise<void>): void {
  const opts = resolveOptions(options)
  attachServer(server, {
    shutdownTimeoutMs: opts.shutdownTimeoutMs,
    idleSocketGraceMs: opts.idleSocketGraceMs,
    signals: opts.signals,
    readinessDelayMs: opts.readinessDelayMs,
    drainOnUncaught: opts.drainOnUncaught,
    webSocketCloseWindowMs: opts.webSocketCloseWindowMs,
    logger: opts.logger,
    close,
    onShutdown: opts.onShutdown,
  })
}

/**
 * Framework-free worker side: `await serve(http.createServer(handler), { port: 3000 })` in the
 * script that `runCluster({ exec })` forks. Waits for the shared snapshot, listens, reports ready,
 * and drains gracefully on shutdown.
 */
export function serve(server: Server, listenOptions: ListenOptions = {}, options: WorkerSideOptions = {}): Promise<WorkerHandle> {
  return serveMain({ server, listen: () => listen(server, listenOptions) }, resolveOptions(options))
}
