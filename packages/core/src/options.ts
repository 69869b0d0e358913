import { fileURLToPath } from 'node:url'
import type { BackoffPolicy, CrashLoopPolicy } from './backoff.js'
import { BALANCING_MODES, type Balancing, defaultBalancing } from './balancing.js'
import { invalidOption } from './errors.js'
import type { HealthRoutes } from './health.js'
import { isLogger, type Logger, type LoggerOption, resolveLogger } from './logger.js'
import type { Primary } from './primary.js'
import { decideWorkers, readHost, type WorkersDecision } from './sizing.js'

/**
 * The values the primary broadcasts, typed once by the app:
 * @example
 * declare module '@shoal/core' {
 *   interface SharedValues { usersCount: number }
 * }
 */
// biome-ignore lint/suspicious/noEmptyInterface: augmented by users through declaration merging
export interface SharedValues {}

type Untyped = keyof SharedValues extends never ? true : false

/** What `shared` looks like on a request: the latest frozen snapshot. A value the primary never managed to compute is `undefined`. */
export type SharedSnapshot = Untyped extends true ? Readonly<Record<string, unknown>> : Readonly<Partial<SharedValues>>

/** A value computed in the primary every `everyMs` (single-flight), or a static `value`. */
export type SharedSource<T> =
  | {
      /** How often the primary recomputes the value, measured from the end of the previous compute. */
      everyMs: number
      /** Runs in the primary only. Sync or async; a throw keeps the last good value. */
      compute: () => T | Promise<T>
      /**
       * A compute still running after this long is logged as failed and the last good value kept.
       * @default everyMs, at most 30_000
       */
      timeoutMs?: number
    }
  | {
      /** A static value; change it later with `primary.shared.set(name, value)`. */
      value: T
    }

export type SharedSources = Untyped extends true
  ? Record<string, SharedSource<unknown>>
  : { [K in keyof SharedValues]?: SharedSource<SharedValues[K]> }

/** Who asked: passed to request handlers in the primary. */
export interface WorkerInfo {
  /** Stable slot index (`SHOAL_WORKER_INDEX`), reused when a worker is replaced. */
  slot: number
  /** node:cluster's worker id: unique per fork. */
  workerId: number
  pid: number
}

export type RequestHandler = (payload: unknown, worker: WorkerInfo) => unknown

/** What a job's `run` is given. */
export interface JobRun {
  readonly name: string
  /** When this tick was due (ms since the epoch); a late timer does not move it. */
  readonly scheduledAt: number
  /** Aborted when the run passes its `timeoutMs` or the cluster shuts down. */
  readonly signal: AbortSignal
  /**
   * Hands the work to one live worker, answered there by `handleInWorker(cmd, handler)`; if that
   * worker dies before it answers, another one gets it (at-least-once). Rejects with `ShoalError`
   * like `request.cluster.request` does. `timeoutMs` defaults to the job's.
   */
  inWorker<T = unknown>(cmd: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<T>
}

/** A job run once per cluster, in the primary: every `everyMs` (fixed rate) or on a `cron` schedule. */
export type Job = (
  | {
      /** Runs every `everyMs` on a fixed grid from start (a long run does not shift it, a tick it overlapped runs late); the first run is `everyMs` after start. */
      everyMs: number
      cron?: never
    }
  | {
      /** A cron expression (`'0 3 * * *'`, seconds optional), parsed by the optional peer dependency `croner`. */
      cron: string
      everyMs?: never
    }
) & {
  /** Runs in the primary only, never overlapping itself. A throw is logged with the job's name; the next tick still runs. */
  run: (job: JobRun) => unknown
  /**
   * A run still going after this long is logged as failed (`timeout`) and its `signal` aborted;
   * ticks that come while it still runs are skipped.
   * @default everyMs, at most 60_000 (cron: 60_000)
   */
  timeoutMs?: number
}

export interface ClusterOptions {
  /**
   * How many workers to run. `'auto'` is the first of the `SHOAL_WORKERS` and `WEB_CONCURRENCY`
   * environment variables, else the least of the CPU affinity (`taskset`), the cgroup CPU quota
   * (rounded down) and `os.availableParallelism()`; at least 1. The decision and its source are
   * logged at start. `0` runs the app in this process without forking (tests, debugging), with the
   * same shared values and request context.
   * @default 'auto'
   * @example workers: 4
   */
  workers?: number | 'auto'
  /**
   * The worker script. By default the current script is re-executed in each worker (the
   * `clusteredListen` style); pass a separate file so the primary never loads the app.
   * @default process.argv[1]
   * @example exec: new URL('./server.js', import.meta.url)
   */
  exec?: string | URL
  /**
   * Arguments for the worker script.
   * @default process.argv.slice(2)
   * @example args: ['--color']
   */
  args?: string[]
  /**
   * Extra environment variables for every worker (on top of the primary's environment).
   * @default {}
   * @example env: { NODE_ENV: 'production' }
   */
  env?: Record<string, string>
  /**
   * Handle SIGINT/SIGTERM (graceful shutdown; a second one exits at once) and SIGUSR2 (rolling reload).
   * Set `false` when embedding shoal in a process that owns its signals; every action has an API call.
   * @default true
   * @example signals: false
   */
  signals?: boolean
  /**
   * How long a draining worker may take to finish in-flight requests before it closes every socket
   * and exits 1. Cleanup (`onShutdown`, the framework's close) then still gets at least
   * min(1000, shutdownTimeoutMs) ms, so it can finish even after a missed deadline. The primary
   * SIGKILLs a worker still alive 2 s after this.
   * @default 5000
   * @example shutdownTimeoutMs: 10_000
   */
  shutdownTimeoutMs?: number
  /**
   * How long a draining worker waits before closing a keep-alive socket that sits idle, so a
   * request already on the wire is served rather than reset.
   * @default 500
   * @example idleSocketGraceMs: 1000
   */
  idleSocketGraceMs?: number
  /**
   * How long a new worker may take to listen and report ready. Past it, the worker is killed and
   * counted as a failed boot (or, in a rolling reload, the reload stops and the old workers stay).
   * @default 30_000
   * @example readyTimeoutMs: 60_000
   */
  readyTimeoutMs?: number
  /**
   * Restart delays after a crash: the first restart is immediate, then `minMs`, doubling to `maxMs`.
   * A worker that stayed up `healthyAfterMs` resets its slot's count.
   * @default { minMs: 250, maxMs: 30_000, healthyAfterMs: 30_000 }
   * @example restartBackoff: { minMs: 1000 }
   */
  restartBackoff?: Partial<BackoffPolicy>
  /**
   * The crash-loop breaker: crashes weighing `maxCrashes` within `windowMs` stop the cluster and exit
   * the primary with code 1, so systemd, Docker or Kubernetes take over. A worker that dies before it
   * was ever ready weighs 2, one that served weighs 1.
   * @default { maxCrashes: 10, windowMs: 60_000 }
   * @example crashLoop: { maxCrashes: 20, windowMs: 120_000 }
   */
  crashLoop?: Partial<CrashLoopPolicy>
  /**
   * A pino-compatible logger (`info/warn/error/debug`), or `'text'` (readable lines on stderr),
   * `'json'` (JSON lines on stderr), `'silent'`.
   * @default 'text'
   * @example logger: app.log
   */
  logger?: LoggerOption
  /**
   * Values computed once in the primary and broadcast to every worker, where they sit on
   * `request.cluster.shared`.
   * @default {}
   * @example shared: { usersCount: { everyMs: 10_000, compute: () => db.countUsers() } }
   */
  shared?: SharedSources
  /**
   * Answers to `request.cluster.request(cmd, payload)` from workers, run in the primary.
   * @default {}
   * @example handlers: { 'cache:purge': async (key) => cache.purge(String(key)) }
   */
  handlers?: Record<string, RequestHandler>
  /**
   * Cleanup run in each worker after its in-flight requests finished (DB pools, queues). It may use
   * what is left of `shutdownTimeoutMs`, and never gets less than min(1000, shutdownTimeoutMs) ms,
   * even after the drain missed its deadline; past that it counts as failed (exit 1).
   * @default undefined
   * @example onShutdown: () => pool.end()
   */
  onShutdown?: () => void | Promise<void>
  /**
   * How many slots a rolling reload replaces at once.
   * @default 1
   * @example reloadConcurrency: 2
   */
  reloadConcurrency?: number
  /**
   * The primary pings every worker every `intervalMs`; a worker whose event loop has not answered
   * for `maxMissed` intervals is stuck: a fresh one is forked and the stuck one killed (it cannot
   * drain). `false` turns it off.
   * @default { intervalMs: 1000, maxMissed: 10 }
   * @example heartbeat: { intervalMs: 500, maxMissed: 20 }
   */
  heartbeat?: false | { intervalMs?: number; maxMissed?: number }
  /**
   * A worker whose resident memory goes past this is replaced gracefully: its replacement is forked
   * and ready before it drains. `'auto'`: each worker's share of the container's memory limit (the
   * same share its `--max-old-space-size` is sized from); off when no limit is known.
   * @default undefined (off)
   * @example maxMemoryMb: 512
   */
  maxMemoryMb?: number | 'auto'
  /**
   * On SIGTERM/SIGINT, readiness turns 503 first and the listeners stay open this long before the
   * drain starts, so an orchestrator's endpoint update lands before connections are refused
   * (Kubernetes: a few seconds).
   * @default 0
   * @example readinessDelayMs: 5000
   */
  readinessDelayMs?: number
  /**
   * On an uncaught exception or unhandled rejection, a worker (or a single process) logs it with its
   * stack, tells the primary, and drains like on a reload: it stops accepting, its other in-flight
   * requests finish within `shutdownTimeoutMs`, then it exits 1 and the primary replaces it (counted
   * as a crash). A second one while draining is only logged. Set `false` when the app installs its
   * own `uncaughtException` / `unhandledRejection` handlers, or embeds shoal in a process that owns
   * them: Node's default (or the app's handler) then applies.
   * @default true
   * @example drainOnUncaught: false
   */
  drainOnUncaught?: boolean
  /**
   * A draining worker closes its upgraded connections (WebSocket) with a close frame — 1012 (service
   * restart) when it is replaced while the cluster runs, 1001 (going away) when the cluster stops —
   * each at its own jittered moment of this window, so its clients reconnect to the other workers
   * gradually, not in one herd. Shortened to leave the closing handshakes 1 s (or half the deadline)
   * before `shutdownTimeoutMs`; 0 closes them all at once. Use `closeWebSocketsOnDrain(wss)` so `ws`
   * does the closing handshake (and to send a last message of your own).
   * @default 2000
   * @example webSocketCloseWindowMs: 10_000
   */
  webSocketCloseWindowMs?: number
  /**
   * Pipe the workers' stdout and stderr through the primary, which writes whole lines only, so lines
   * longer than the pipe's atomic size (4 KiB) from several workers never tear. Only where the
   * primary's stream is a pipe or a file; a terminal keeps direct output. The primary then spends a
   * little CPU per line: turn it off for apps that log heavily to a pipe and never log long lines.
   * @default true
   * @example relayLogs: false
   */
  relayLogs?: boolean
  /**
   * Jobs run once per cluster — in the primary only, not in every worker — every `everyMs` or on a
   * `cron` schedule, never overlapping themselves, with a deadline. `job.inWorker(cmd, payload)`
   * hands the work to one live worker when it needs the app's own modules. `status().jobs` shows
   * each one's last run. With `workers: 0` they run in this process.
   * @default {}
   * @example jobs: { purgeSessions: { everyMs: 60_000, run: () => db.purgeExpiredSessions() } }
   */
  jobs?: Record<string, Job>
  /**
   * Runs once in the primary, awaited, before the first fork (and before shared values and jobs
   * start): start the primary half of a library here (a cluster rate-limit store, socket.io's cluster
   * adapter), or subscribe to the `Primary`'s events. A throw fails `start()` with
   * `SHOAL_ERR_ON_PRIMARY_FAILED` and nothing is forked. Never runs in a worker or with `workers: 0`.
   * @default undefined
   * @example onPrimary: () => new ClusterMemoryStorePrimary().init()
   */
  onPrimary?: (primary: Primary) => void | Promise<void>
  /**
   * How connections reach the workers.
   * - `'shared'`: every worker accepts from one listening socket (node:cluster's `SCHED_NONE`). No
   *   hop through the primary, so a connection per request (nginx's default upstream, `ab` without
   *   `-k`, health checks, webhooks) costs no more than in one process; a worker that drains leaves
   *   the socket, and its queue, to the others.
   * - `'round-robin'`: the primary accepts every connection and passes it to the next worker over
   *   IPC (node:cluster's `SCHED_RR`): the most even spread, and the primary's CPU is the ceiling on
   *   new connections per second.
   * - `'reuse-port'`: every worker binds its own socket with `SO_REUSEPORT` and the kernel spreads
   *   connections. Linux, Node ≥ 22.12, a fixed port, and `net.ipv4.tcp_migrate_req = 1` (without
   *   it a draining worker's queued connections are reset); elsewhere shoal says why in one log line
   *   and uses `'round-robin'`.
   * `BENCHMARKS.md` (section "Balancing") has the measured trade-offs.
   * @default 'shared' ('round-robin' on Windows)
   * @example balancing: 'round-robin'
   */
  balancing?: Balancing
}

export interface ResolvedOptions {
  workers: number
  exec: string
  args: string[]
  env: Record<string, string>
  signals: boolean
  shutdownTimeoutMs: number
  idleSocketGraceMs: number
  readyTimeoutMs: number
  restartBackoff: BackoffPolicy
  crashLoop: CrashLoopPolicy
  logger: Logger
  shared: Record<string, SharedSource<unknown>>
  handlers: Record<string, RequestHandler>
  onShutdown: (() => void | Promise<void>) | undefined
  reloadConcurrency: number
  heartbeat: { intervalMs: number; maxMissed: number } | false
  maxMemoryMb: number | 'auto' | undefined
  readinessDelayMs: number
  drainOnUncaught: boolean
  webSocketCloseWindowMs: number
  /** How `workers` was decided, logged once at start ("2 workers: cgroup quota 2.5 CPUs"). */
  workersDecision: WorkersDecision
  relayLogs: boolean
  jobs: Record<string, Job>
  onPrimary: ((primary: Primary) => void | Promise<void>) | undefined
  balancing: Balancing
}

/** Every option `resolveOptions` knows; anything else is a typo and rejected by name. */
export const OPTION_NAMES: readonly (keyof ClusterOptions)[] = [
  'workers',
  'exec',
  'args',
  'env',
  'signals',
  'shutdownTimeoutMs',
  'idleSocketGraceMs',
  'readyTimeoutMs',
  'restartBackoff',
  'crashLoop',
  'logger',
  'shared',
  'handlers',
  'onShutdown',
  'reloadConcurrency',
  'heartbeat',
  'maxMemoryMb',
  'readinessDelayMs',
  'drainOnUncaught',
  'webSocketCloseWindowMs',
  'relayLogs',
  'jobs',
  'onPrimary',
  'balancing',
]
const KNOWN = new Set<string>(OPTION_NAMES)

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

function durationMs(name: string, value: unknown, fallback: number, { min = 0 } = {}): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 2 ** 31 - 1) {
    throw invalidOption(name, `an integer number of milliseconds ≥ ${min}`, value)
  }
  return value
}

function positiveInt(name: string, value: unknown, fallback: number, max = 10_000): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw invalidOption(name, 'a positive integer', value)
  }
  return value
}

function section(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {}
  if (!isPlainObject(value)) throw invalidOption(name, 'an object', value)
  return value
}

function resolveWorkers(value: unknown): WorkersDecision {
  if (value === undefined || value === 'auto') return decideWorkers(process.env, readHost())
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 1024) {
    throw invalidOption('workers', "a positive integer, 0 (run in-process) or 'auto'", value)
  }
  return { workers: value, source: 'option', reason: 'the workers option' }
}

function resolveBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalidOption(name, 'a boolean', value)
  return value
}

function resolveMaxMemory(value: unknown): number | 'auto' | undefined {
  if (value === undefined || value === 'auto') return value
  return positiveInt('maxMemoryMb', value, 0, 1_048_576)
}

function resolveExec(value: unknown): string {
  if (value === undefined) {
    const script = process.argv[1]
    if (!script) throw invalidOption('exec', 'a script path (none could be taken from process.argv[1])', value)
    return script
  }
  if (value instanceof URL) {
    if (value.protocol !== 'file:') throw invalidOption('exec', 'a file: URL or a path', value)
    return fileURLToPath(value)
  }
  if (typeof value === 'string' && value.length > 0) return value.startsWith('file:') ? fileURLToPath(value) : value
  throw invalidOption('exec', 'a file: URL or a path', value)
}

function stringArray(name: string, value: unknown, fallback: string[]): string[] {
  if (value === undefined) return fallback
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw invalidOption(name, 'an array of strings', value)
  return [...value]
}

function resolveEnv(value: unknown): Record<string, string> {
  const env = section('env', value)
  for (const [k, v] of Object.entries(env)) if (typeof v !== 'string') throw invalidOption(`env.${k}`, 'a string', v)
  return env as Record<string, string>
}

function resolveShared(value: unknown): Record<string, SharedSource<unknown>> {
  const sources = section('shared', value)
  for (const [name, source] of Object.entries(sources)) {
    const at = `shared.${name}`
    if (!isPlainObject(source)) throw invalidOption(at, '{ everyMs, compute } or { value }', source)
    if ('value' in source) {
      if ('compute' in source) throw invalidOption(at, 'either { value } or { everyMs, compute }, not both', source)
      continue
    }
    if (typeof source.compute !== 'function') throw invalidOption(`${at}.compute`, 'a function', source.compute)
    if (source.everyMs === undefined) throw invalidOption(`${at}.everyMs`, 'an integer number of milliseconds ≥ 10', undefined)
    durationMs(`${at}.everyMs`, source.everyMs, 0, { min: 10 })
    if (source.timeoutMs !== undefined) durationMs(`${at}.timeoutMs`, source.timeoutMs, 0, { min: 1 })
  }
  return sources as Record<string, SharedSource<unknown>>
}

function resolveJobs(value: unknown): Record<string, Job> {
  const jobs = section('jobs', value)
  for (const [name, job] of Object.entries(jobs)) {
    const at = `jobs.${name}`
    if (!isPlainObject(job)) throw invalidOption(at, '{ everyMs, run } or { cron, run }', job)
    if (typeof job.run !== 'function') throw invalidOption(`${at}.run`, 'a function (job) => void | Promise<void>', job.run)
    if ((job.everyMs === undefined) === (job.cron === undefined)) {
      throw invalidOption(at, 'one of `everyMs` or `cron`', job.everyMs === undefined ? 'neither' : 'both')
    }
    if (job.everyMs !== undefined) durationMs(`${at}.everyMs`, job.everyMs, 0, { min: 10 })
    if (job.cron !== undefined && (typeof job.cron !== 'string' || job.cron.trim() === '')) {
      throw invalidOption(`${at}.cron`, "a cron expression such as '0 3 * * *'", job.cron)
    }
    if (job.timeoutMs !== undefined) durationMs(`${at}.timeoutMs`, job.timeoutMs, 0, { min: 1 })
  }
  return jobs as Record<string, Job>
}

function resolveHandlers(value: unknown): Record<string, RequestHandler> {
  const handlers = section('handlers', value)
  for (const [cmd, fn] of Object.entries(handlers)) {
    if (typeof fn !== 'function') throw invalidOption(`handlers.${cmd}`, 'a function (payload, worker) => result', fn)
  }
  return handlers as Record<string, RequestHandler>
}

function resolveHeartbeat(value: unknown): ResolvedOptions['heartbeat'] {
  if (value === false) return false
  if (value !== undefined && !isPlainObject(value)) throw invalidOption('heartbeat', 'false or { intervalMs, maxMissed }', value)
  const h = section('heartbeat', value)
  return {
    intervalMs: durationMs('heartbeat.intervalMs', h.intervalMs, 1000, { min: 10 }),
    maxMissed: positiveInt('heartbeat.maxMissed', h.maxMissed, 10),
  }
}

/** The options that shape a worker's (or a single process's) drain, which the adapters also take. */
export const WORKER_SIDE_NAMES = [
  'shutdownTimeoutMs',
  'idleSocketGraceMs',
  'onShutdown',
  'logger',
  'signals',
  'readinessDelayMs',
  'drainOnUncaught',
  'webSocketCloseWindowMs',
] as const

type WorkerSideName = (typeof WORKER_SIDE_NAMES)[number]

function resolveWorkerSide(o: Record<string, unknown>): Pick<ResolvedOptions, WorkerSideName> {
  if (o.signals !== undefined && typeof o.signals !== 'boolean') throw invalidOption('signals', 'a boolean', o.signals)
  if (o.drainOnUncaught !== undefined && typeof o.drainOnUncaught !== 'boolean') {
    throw invalidOption('drainOnUncaught', 'a boolean', o.drainOnUncaught)
  }
  if (o.logger !== undefined && !['text', 'json', 'silent'].includes(o.logger as string) && !isLogger(o.logger)) {
    throw invalidOption('logger', "a pino-compatible logger or 'text' | 'json' | 'silent'", o.logger)
  }
  if (o.onShutdown !== undefined && typeof o.onShutdown !== 'function') throw invalidOption('onShutdown', 'a function', o.onShutdown)
  return {
    signals: o.signals ?? true,
    logger: resolveLogger(o.logger as LoggerOption | undefined),
    onShutdown: o.onShutdown as ResolvedOptions['onShutdown'],
    shutdownTimeoutMs: durationMs('shutdownTimeoutMs', o.shutdownTimeoutMs, 5000, { min: 1 }),
    idleSocketGraceMs: durationMs('idleSocketGraceMs', o.idleSocketGraceMs, 500),
    readinessDelayMs: durationMs('readinessDelayMs', o.readinessDelayMs, 0),
    drainOnUncaught: (o.drainOnUncaught as boolean | undefined) ?? true,
    webSocketCloseWindowMs: durationMs('webSocketCloseWindowMs', o.webSocketCloseWindowMs, 2000),
  }
}

/** An option an adapter may take: a health route, or one that shapes the drain. */
export type AdapterOptionName = keyof HealthRoutes | WorkerSideName

const HEALTH_NAMES: readonly string[] = ['readinessPath', 'livenessPath'] satisfies (keyof HealthRoutes)[]

/**
 * Validates an adapter's options where they are given (a plugin's registration, a middleware's
 * call), not later where a framework would only log the error: unknown keys (a typo) by name, the
 * health paths, and the drain options with `resolveOptions`' own messages. `ignore` names keys that
 * belong to the framework (Fastify's `prefix`, ...). Throws `ShoalError` (SHOAL_ERR_INVALID_OPTION).
 * @example validateAdapterOptions(options, ['readinessPath', 'livenessPath'])
 */
export function validateAdapterOptions(input: unknown, names: readonly AdapterOptionName[], ignore: readonly string[] = []): void {
  if (input === undefined) return
  if (!isPlainObject(input)) throw invalidOption('options', 'an object', input)
  const known = new Set<string>(names)
  for (const key of Object.keys(input)) {
    if (!known.has(key) && !ignore.includes(key)) throw invalidOption(key, `a known option (${names.join(', ')})`, 'unknown option')
  }
  for (const name of HEALTH_NAMES) {
    const path = input[name]
    if (known.has(name) && path !== undefined && !(typeof path === 'string' && path.startsWith('/'))) {
      throw invalidOption(name, "a path starting with '/'", path)
    }
  }
  const side: Record<string, unknown> = {}
  for (const name of WORKER_SIDE_NAMES) if (known.has(name)) side[name] = input[name]
  resolveWorkerSide(side)
}

/** Validates every option up front, before anything is forked; throws `ShoalError` naming the first bad one. */
export function resolveOptions(input: unknown = {}): ResolvedOptions {
  if (!isPlainObject(input)) throw invalidOption('options', 'an object', input)
  for (const key of Object.keys(input)) {
    if (!KNOWN.has(key)) throw invalidOption(key, `a known option (${[...KNOWN].join(', ')})`, 'unknown option')
  }
  const o = input as ClusterOptions & Record<string, unknown>
  const side = resolveWorkerSide(o)
  const backoff = section('restartBackoff', o.restartBackoff)
  const crash = section('crashLoop', o.crashLoop)
  const minMs = durationMs('restartBackoff.minMs', backoff.minMs, 250, { min: 1 })
  const maxMs = durationMs('restartBackoff.maxMs', backoff.maxMs, 30_000, { min: 1 })
  if (maxMs < minMs) throw invalidOption('restartBackoff.maxMs', `a number ≥ restartBackoff.minMs (${minMs})`, maxMs)
  const workersDecision = resolveWorkers(o.workers)

  return {
    workers: workersDecision.workers,
    exec: resolveExec(o.exec),
    args: stringArray('args', o.args, process.argv.slice(2)),
    env: resolveEnv(o.env),
    signals: side.signals,
    shutdownTimeoutMs: side.shutdownTimeoutMs,
    idleSocketGraceMs: side.idleSocketGraceMs,
    readyTimeoutMs: durationMs('readyTimeoutMs', o.readyTimeoutMs, 30_000, { min: 1 }),
    restartBackoff: {
      minMs,
      maxMs,
      healthyAfterMs: durationMs('restartBackoff.healthyAfterMs', backoff.healthyAfterMs, 30_000),
    },
    crashLoop: {
      maxCrashes: positiveInt('crashLoop.maxCrashes', crash.maxCrashes, 10),
      windowMs: durationMs('crashLoop.windowMs', crash.windowMs, 60_000, { min: 1 }),
    },
    logger: side.logger,
    shared: resolveShared(o.shared),
    handlers: resolveHandlers(o.handlers),
    onShutdown: side.onShutdown,
    reloadConcurrency: positiveInt('reloadConcurrency', o.reloadConcurrency, 1),
    heartbeat: resolveHeartbeat(o.heartbeat),
    maxMemoryMb: resolveMaxMemory(o.maxMemoryMb),
    readinessDelayMs: side.readinessDelayMs,
    drainOnUncaught: side.drainOnUncaught,
    webSocketCloseWindowMs: side.webSocketCloseWindowMs,
    workersDecision,
    relayLogs: resolveBoolean('relayLogs', o.relayLogs, true),
    jobs: resolveJobs(o.jobs),
    onPrimary: resolveOnPrimary(o.onPrimary),
    balancing: resolveBalancing(o.balancing),
  }
}

function resolveOnPrimary(value: unknown): ResolvedOptions['onPrimary'] {
  if (value !== undefined && typeof value !== 'function')
    throw invalidOption('onPrimary', 'a function (primary) => void | Promise<void>', value)
  return value as ResolvedOptions['onPrimary']
}

function resolveBalancing(value: unknown): Balancing {
  if (value === undefined) return defaultBalancing(process.platform)
  if (!(BALANCING_MODES as readonly unknown[]).includes(value)) {
    throw invalidOption(
      'balancing',
      BALANCING_MODES.map((m) => `'${m}'`)
        .join(', ')
        .replace(/, ([^,]*)$/, ' or $1'),
      value,
    )
  }
  return value as Balancing
}
