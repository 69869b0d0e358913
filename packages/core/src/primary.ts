import cluster, { type Worker } from 'node:cluster'
import { EventEmitter } from 'node:events'
import { WorkerAsks } from './ask.js'
import { BALANCING_ENV, type Balancing, type BalancingDecision, decideBalancing, readBalancingHost } from './balancing.js'
import { answerCommand } from './dispatch.js'
import { codes, errorMessage, invalidOption, ShoalError } from './errors.js'
import { type JobRunReport, type JobStatus, Jobs } from './jobs.js'
import type { Logger } from './logger.js'
import {
  type ClusterMetricsAnswer,
  type Collected,
  DEFAULT_METRICS_TIMEOUT_MS,
  MetricsBook,
  metricsPerWorker,
  metricsRenderer,
  metricsTimeoutMs,
  OwnStats,
  ownMetrics,
  type RenderedMetrics,
} from './metrics.js'
import type { RequestHandler, ResolvedOptions } from './options.js'
import { isShoalMessage, type PrimaryMessage, parseWorkerMessage, type WorkerMessage } from './protocol.js'
import { relayLines, stdioFor } from './relay.js'
import { ReloadQueue, replaceAll } from './reload.js'
import { SharedStore } from './shared.js'
import { installPrimarySignals } from './signals.js'
import { type ContainerPlan, decideMemoryLimit, planContainer, readHost } from './sizing.js'
import { KILL_MARGIN_MS, SlotError, type SlotHost, SlotMachine, type SlotNote } from './slots.js'

export { KILL_MARGIN_MS } from './slots.js'

export type WorkerState = 'starting' | 'ready' | 'draining' | 'exited'

export interface WorkerStatus {
  slot: number
  workerId: number
  pid: number
  state: WorkerState
  /** Which reload this worker's code came from: 0 at start, +1 per rolling reload. */
  generation: number
  uptimeMs: number
  /** Restarts of this slot after crashes since the primary started. */
  restarts: number
  address: string | undefined
  /** Resident memory at the last heartbeat. */
  rssBytes: number | undefined
  /** Mean event-loop delay over the last heartbeat interval. */
  loopDelayMs: number | undefined
  /** Open upgraded connections (WebSocket) at the last heartbeat. */
  upgraded: number | undefined
}

export interface ClusterStatus {
  state: 'starting' | 'running' | 'stopping'
  reloading: boolean
  generation: number
  target: number
  workers: WorkerStatus[]
  shared: Record<string, { version: number; updatedAt: number }>
  /** How the worker count and heap were sized at start (`undefined` before `start()`). */
  sizing: { reason: string; heapMb: number | undefined; maxMemoryMb: number | undefined } | undefined
  /** Each job's runs, failures, last run (outcome, duration) and next tick. */
  jobs: Record<string, JobStatus>
  /** How connections reach the workers (the `balancing` option, after any platform fallback). */
  balancing: Balancing
}

export interface ReloadOutcome {
  generation: number
  durationMs: number
  replaced: number
}

export interface PrimaryEvents {
  fork: [{ slot: number; workerId: number; pid: number; generation: number }]
  ready: [{ slot: number; workerId: number; pid: number; generation: number; address: string }]
  exit: [{ slot: number; workerId: number; pid: number; code: number | null; signal: string | null; planned: boolean }]
  /** A worker process could not be started (ENOENT, EAGAIN, EMFILE): a failed boot. */
  'spawn-error': [{ slot: number; error: string }]
  'restart-scheduled': [{ slot: number; delayMs: number; consecutiveCrashes: number }]
  'crash-loop': [{ crashWeight: number; windowMs: number; lastError: string }]
  shutdown: [{ reason: string; code: number }]
  'reload-start': [{ generation: number }]
  'reload-progress': [{ generation: number; slot: number; pid: number; done: number; total: number }]
  'reload-done': [ReloadOutcome]
  'reload-failed': [{ generation: number; slot: number; reason: string }]
  /** A job's run settled: ok, failed or timeout, with its duration. */
  job: [JobRunReport]
}

/** Telemetry from a worker's heartbeat answers. */
interface Beat {
  lastBeatAt: number
  rssBytes: number | undefined
  loopDelayMs: number | undefined
  upgraded: number | undefined
}

/**
 * The handle `runCluster` / `clusteredListen` resolve to in the primary. Orchestration only: who owns
 * each slot is decided by the `SlotMachine` (slots.ts); this class turns node:cluster's events and IPC
 * into its events, runs the heartbeat, the memory ceiling, reloads, shared values and signals.
 */
export class Primary extends EventEmitter<PrimaryEvents> {
  readonly role = 'primary' as const
  readonly #opts: ResolvedOptions
  readonly #log: Logger
  readonly #machine: SlotMachine
  readonly #processes = new Map<number, Worker>()
  readonly #beats = new Map<number, Beat>()
  /** Slots whose worker is being replaced for its memory: one replacement at a time. */
  readonly #refreshing = new Set<number>()
  readonly #store: SharedStore
  readonly #jobs: Jobs
  /** Work jobs hand to workers (`job.inWorker`), retried on another worker if one dies. */
  readonly #asks: WorkerAsks
  readonly #reloads: ReloadQueue<ReloadOutcome>
  #state: ClusterStatus['state'] = 'starting'
  #starting: Promise<this> | undefined
  #shutdown: Promise<number> | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #seq = 0
  #started: { resolve: () => void; promise: Promise<void> }
  /** Worker count, heap share and memory ceiling as sized for this machine or container, at start. */
  #plan: ContainerPlan | undefined
  /** The requested mode until `start()` decides what this platform runs. */
  #balancing: BalancingDecision
  /** Why start() rejects, once the cluster it began is down (a worker could not listen). */
  #startError: ShoalError | undefined
  /** Each live worker's last collected metrics, and the retired workers' counters folded into one. */
  readonly #metrics = new MetricsBook()
  /** shoal's own counts for its metrics (restarts, reloads, drains): a few integers. */
  readonly #stats = new OwnStats()

  /**
   * Commands every worker may send without a user handler. `shoal:reload` starts a rolling reload
   * (the signal-free path, e.g. behind an admin route on Windows) and answers at once: the asking
   * worker is itself replaced, so it must not wait for the end.
   */
  readonly #builtins: Record<string, RequestHandler> = {
    'shoal:reload': () => {
      this.reload().catch(() => {}) // reported by 'reload-failed' and the log
      return { started: true }
    },
    // A draining worker's last round trip: IPC is ordered, so once it has this answer it has read every
    // connection the primary handed it before it stopped listening, and may exit without losing one.
    'shoal:sync': () => true,
    // A worker sent SIGTERM asks to be replaced first: it keeps serving until its replacement is ready,
    // then gets the usual drain message. Answered then; the worker drains by itself on any answer.
    'shoal:replace-me': async (_payload, worker) => {
      await this.#machine.handover(worker.workerId, 'SIGTERM')
      return true
    },
    // A draining worker's final values, after its servers drained; folded once (see metrics.ts).
    'shoal:metrics-final': (payload, worker) => this.#metrics.final(worker.workerId, payload),
  }

  /** Values broadcast to every worker: `primary.shared.set('usersCount', 42)`. */
  readonly shared: {
    set: (name: string, value: unknown) => void
    get: (name: string) => unknown
  }

  constructor(opts: ResolvedOptions) {
    super()
    this.#opts = opts
    this.#log = opts.logger
    this.#balancing = { requested: opts.balancing, mode: opts.balancing }
    this.#machine = new SlotMachine(opts.workers, opts, this.#host())
    this.#store = new SharedStore(opts.shared, opts.logger, (name, entry) =>
      this.#broadcast({ shoal: 1, type: 'shared-update', name, entry }),
    )
    this.#asks = new WorkerAsks({
      live: () =>
        this.#machine
          .workers()
          .filter((w) => w.role === 'current' && w.phase === 'ready' && this.#processes.get(w.key)?.isConnected())
          .map((w) => w.key),
      send: (key, message) => {
        const worker = this.#processes.get(key)
        return worker !== undefined && this.#send(worker, message)
      },
    })
    this.#jobs = new Jobs(
      opts.jobs,
      opts.logger,
      (cmd, payload, options) => this.#asks.ask(cmd, payload, options),
      (report) => this.#publish('job', report),
    )
    this.shared = { set: (name, value) => this.#store.set(name, value), get: (name) => this.#store.get(name) }
    this.#reloads = new ReloadQueue(() => this.#reload())
    let resolve = () => {}
    const promise = new Promise<void>((r) => {
      resolve = r
    })
    this.#started = { resolve, promise }
  }

  /** Computes shared values, forks every slot, resolves when each slot has been ready once. Idempotent. */
  start(): Promise<this> {
    this.#starting ??= this.#start()
    return this.#starting
  }

  async #start(): Promise<this> {
    await this.#runOnPrimary()
    // Before anything that assumes a running cluster: a bad cron expression fails start() cleanly.
    await this.#jobs.start()
    this.#balancing = decideBalancing(this.#opts.balancing, readBalancingHost())
    if (this.#balancing.unavailable) {
      this.#log.warn(
        { balancing: this.#balancing },
        `balancing '${this.#balancing.requested}' is not available: ${this.#balancing.unavailable}; using 'round-robin'`,
      )
    }
    // node:cluster reads it once, at the first fork. 'reuse-port' workers bind their own sockets; any
    // other server they open shares one socket, the cheaper of the two node:cluster modes.
    cluster.schedulingPolicy = this.#balancing.mode === 'round-robin' ? cluster.SCHED_RR : cluster.SCHED_NONE
    this.#plan = planContainer({
      decision: this.#opts.workersDecision,
      maxMemoryMb: this.#opts.maxMemoryMb,
      memoryLimitBytes: decideMemoryLimit(process.env, readHost()),
      execArgv: process.execArgv,
      nodeOptions: this.#opts.env.NODE_OPTIONS ?? process.env.NODE_OPTIONS,
    })
    this.#log.info(
      { workers: this.#opts.workers, balancing: this.#balancing.mode },
      `${this.#plan.message}; balancing '${this.#balancing.mode}'`,
    )
    cluster.setupPrimary({
      exec: this.#opts.exec,
      args: this.#opts.args,
      execArgv: this.#plan.execArgv,
      // relayLogs: workers' output reaches a pipe or a file through the primary, in whole lines (relay.ts).
      stdio: this.#opts.relayLogs ? [0, stdioFor(process.stdout), stdioFor(process.stderr), 'ipc'] : [0, 1, 2, 'ipc'],
    })
    if (this.#opts.signals) installPrimarySignals(this, this.#log)
    // The loop only empties while the cluster runs if nothing is left to supervise: never a silent exit 0.
    process.once('beforeExit', () => {
      if (this.#shutdown) return
      this.#log.error({ pid: process.pid }, 'the primary has no worker left and no restart pending; exiting 1')
      process.exitCode = 1
    })
    this.#warnAboutDeadlines()
    await this.#store.start()
    this.#machine.start()
    this.#startHeartbeat()
    await this.#started.promise
    if (this.#startError) throw this.#startError
    if (this.#state === 'starting') {
      this.#state = 'running'
      this.#log.info({ workers: this.#machine.size, pid: process.pid }, 'cluster ready')
    }
    return this
  }

  status(): ClusterStatus {
    const now = Date.now()
    const shared: ClusterStatus['shared'] = {}
    for (const [name, { version, updatedAt }] of Object.entries(this.#store.snapshot())) shared[name] = { version, updatedAt }
    return {
      state: this.#state,
      reloading: this.#reloads.busy,
      generation: this.#machine.generation,
      target: this.#machine.size,
      workers: this.#machine
        .workers()
        .filter((w) => w.pid !== undefined)
        .map((w) => ({
          slot: w.slot,
          workerId: w.key,
          pid: w.pid ?? -1,
          state: w.phase,
          generation: w.generation,
          uptimeMs: now - w.startedAt,
          restarts: this.#machine.restarts(w.slot),
          address: w.address,
          rssBytes: this.#beats.get(w.key)?.rssBytes,
          loopDelayMs: this.#beats.get(w.key)?.loopDelayMs,
          upgraded: this.#beats.get(w.key)?.upgraded,
        })),
      shared,
      sizing: this.#plan && {
        reason: this.#plan.message,
        heapMb: this.#plan.execArgv.length > process.execArgv.length ? this.#plan.heap?.heapMb : undefined,
        maxMemoryMb: this.#plan.maxMemoryMb,
      },
      jobs: this.#jobs.status(),
      balancing: this.#balancing.mode,
    }
  }

  /**
   * Every serving worker's metrics (prom-client's `getMetricsAsJSON()` shape), the retired workers'
   * counters and histograms, and shoal's own metrics: what `@shoal/metrics` merges and renders, here
   * for a metrics server of the primary's own (`primaryMetricsServer`). Each worker gets `timeoutMs`;
   * one that has not answered by then is counted as timed out and never fails the collect.
   * @example const { workers, retired, own } = await primary.collectMetrics({ timeoutMs: 1000 })
   */
  collectMetrics({ timeoutMs = DEFAULT_METRICS_TIMEOUT_MS }: { timeoutMs?: number } = {}): Promise<ClusterMetricsAnswer> {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) {
      return Promise.reject(invalidOption('timeoutMs', 'an integer number of milliseconds from 1 to 60000', timeoutMs))
    }
    return this.#collectMetrics(timeoutMs)
  }

  /** The `onPrimary` hook, before anything else starts: a library's primary half must exist before the first fork. */
  async #runOnPrimary(): Promise<void> {
    const hook = this.#opts.onPrimary
    if (!hook) return
    try {
      await hook(this)
    } catch (err) {
      throw new ShoalError(codes.SHOAL_ERR_ON_PRIMARY_FAILED, `onPrimary failed, no worker was started: ${errorMessage(err)}`, {
        cause: err,
      })
    }
  }

  /**
   * Rolling reload: per slot, fork the replacement, wait until it is ready, then drain the old one.
   * A replacement that crashes or is not ready in `readyTimeoutMs` stops the reload and the old
   * workers keep serving; the promise rejects with `SHOAL_ERR_RELOAD_FAILED`. Requests made while a
   * reload runs share one follow-up reload. Workers load code from disk; the primary's own code is not reloaded.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.#shutdown || this.#machine.stopping) {
      return Promise.reject(new ShoalError(codes.SHOAL_ERR_SHUTTING_DOWN, 'cannot reload: the cluster is shutting down'))
    }
    return this.#reloads.request()
  }

  /**
   * Graceful shutdown of the whole cluster: no more respawns, every worker drains, a worker still
   * alive `shutdownTimeoutMs` + 2 s later is SIGKILLed. Resolves to the exit code the primary should
   * use: 0 when every worker drained cleanly. Idempotent. Does not exit the process.
   */
  shutdown(reason = 'api'): Promise<number> {
    this.#shutdown ??= this.#stopAll(reason)
    return this.#shutdown
  }

  /** SIGKILLs every worker at once (the second Ctrl+C). */
  kill(): void {
    this.#machine.killAll()
  }

  async #stopAll(reason: string): Promise<number> {
    this.#state = 'stopping'
    this.#log.info({ reason, workers: this.#processes.size }, 'shutting down')
    this.#store.stop()
    this.#jobs.stop()
    this.#asks.stop()
    clearInterval(this.#heartbeat)
    // A start that failed to listen has no traffic to hand over, and respawns would run meanwhile.
    const delayMs = reason === 'listen-failed' ? 0 : this.#opts.readinessDelayMs
    if (delayMs > 0) {
      // Readiness turns 503 everywhere while the listeners stay open, so the platform's endpoint
      // update lands before any connection is refused.
      this.#broadcast({ shoal: 1, type: 'not-ready' })
      this.#log.info({ readinessDelayMs: delayMs }, 'readiness is 503, draining after the readiness delay')
      await new Promise((resolve) => setTimeout(resolve, delayMs))
    }
    const drained = await this.#machine.shutdown(reason)
    // A cluster stopped by the crash-loop breaker or a failed listen at start failed, however cleanly it drained.
    const code = reason === 'crash-loop' || this.#startError ? 1 : drained
    this.#log.info({ reason, code }, 'cluster stopped')
    this.#publish('shutdown', { reason, code })
    this.#started.resolve()
    return code
  }

  /** The machine's window on the world: node:cluster, real timers, the logger and our events. */
  #host(): SlotHost {
    return {
      spawn: (slot, generation) => this.#fork(slot, generation),
      kill: (key) => {
        try {
          this.#processes.get(key)?.process.kill('SIGKILL')
        } catch (err) {
          this.#log.debug({ err, workerId: key }, 'could not SIGKILL worker')
        }
      },
      drain: (key, reason, deadlineMs) => {
        const worker = this.#processes.get(key)
        if (!worker) return
        // A worker whose channel is gone cannot hear the message; SIGTERM asks it to drain too.
        // `restart`: replaced while the cluster keeps running (its WebSockets get 1012), or stopping with it (1001).
        const restart = !(this.#shutdown || this.#machine.stopping)
        if (!this.#send(worker, { shoal: 1, type: 'shutdown', reason, shutdownTimeoutMs: deadlineMs, restart }))
          worker.process.kill('SIGTERM')
      },
      setTimer: (ms, fn) => {
        const timer = setTimeout(fn, ms)
        return { cancel: () => clearTimeout(timer) }
      },
      now: Date.now,
      notify: (note) => this.#onNote(note),
    }
  }

  #fork(slot: number, generation: number): { key: number; pid: number | undefined } {
    const worker = cluster.fork({
      ...this.#opts.env,
      SHOAL_WORKER_INDEX: String(slot),
      [BALANCING_ENV]: this.#balancing.mode,
      SHOAL_GENERATION: String(generation),
      // How long a handover (SIGTERM to a worker) may wait for the primary's answer.
      SHOAL_READY_TIMEOUT_MS: String(this.#opts.readyTimeoutMs),
    })
    const key = worker.id
    this.#processes.set(key, worker)
    if (worker.process.stdout) relayLines(worker.process.stdout, process.stdout)
    if (worker.process.stderr) relayLines(worker.process.stderr, process.stderr)
    worker.on('message', (message: unknown) => this.#onMessage(key, message))
    worker.on('exit', (code: number | null, signal: string | null) => this.#machine.exited(key, code, signal))
    worker.on('error', (err: NodeJS.ErrnoException) => {
      if (worker.process.pid === undefined || String(err.syscall ?? '').startsWith('spawn')) {
        // No process, so no exit event will come: node:cluster would keep it listed forever.
        delete cluster.workers?.[key]
        this.#machine.spawnFailed(key, errorMessage(err))
        return
      }
      // An IPC write to a dying worker must not take the primary down.
      this.#log.debug({ err, slot, pid: worker.process.pid }, 'worker channel error')
    })
    return { key, pid: worker.process.pid }
  }

  #onNote(note: SlotNote): void {
    const log = this.#log
    switch (note.type) {
      case 'fork':
        log.debug({ slot: note.slot, pid: note.pid, generation: note.generation }, 'forked worker')
        this.#metrics.add(note.key, note.slot, note.pid ?? -1)
        if (note.pid !== undefined)
          this.#publish('fork', { slot: note.slot, workerId: note.key, pid: note.pid, generation: note.generation })
        return
      case 'spawn-error':
        if (note.key !== undefined) this.#metrics.exited(note.key) // no process: no exit note will come
        log.error({ slot: note.slot, error: note.error }, `could not start a worker for slot ${note.slot}: ${note.error}`)
        this.#publish('spawn-error', { slot: note.slot, error: note.error })
        return
      case 'ready': {
        this.#beats.set(note.key, { lastBeatAt: Date.now(), rssBytes: undefined, loopDelayMs: undefined, upgraded: undefined })
        const { slot, key, pid, generation, address } = note
        log.info({ slot, pid, address, generation }, 'worker ready')
        this.#publish('ready', { slot, workerId: key, pid: pid ?? -1, generation, address })
        if (note.allReady) this.#started.resolve()
        this.#asks.changed()
        return
      }
      case 'ready-timeout':
        log.error({ slot: note.slot, pid: note.pid }, `worker ${note.error}, killing it`)
        return
      case 'exit': {
        const { slot, key, pid, code, signal, planned } = note
        this.#processes.delete(key)
        this.#beats.delete(key)
        this.#asks.gone(key)
        this.#metrics.exited(key)
        this.#stats.exited(key, Date.now())
        if (pid !== undefined) this.#publish('exit', { slot, workerId: key, pid, code, signal, planned })
        return
      }
      case 'crash':
        this.#stats.restart('crash', note.key)
        log.warn({ slot: note.slot, pid: note.pid, ready: note.ready }, `worker crashed: ${note.reason}`)
        return
      case 'restart-scheduled':
        if (note.delayMs > 0) log.info({ slot: note.slot, delayMs: note.delayMs }, 'restart scheduled')
        this.#publish('restart-scheduled', { slot: note.slot, delayMs: note.delayMs, consecutiveCrashes: note.consecutiveCrashes })
        return
      case 'self-drain':
        if (note.fatal) log.error({ slot: note.slot, pid: note.pid }, 'worker hit an uncaught exception and drains; replacing it')
        else log.info({ slot: note.slot, pid: note.pid }, 'worker drains on its own (SIGTERM); replacing it now')
        return
      case 'stuck':
        this.#stats.restart('stuck', note.key)
        log.error(
          { slot: note.slot, pid: note.pid, stuckMs: note.silentMs },
          `worker stuck: event loop silent for ${note.silentMs} ms, replacing it`,
        )
        return
      case 'kill-deadline':
        log.warn({ slot: note.slot, pid: note.pid }, 'worker outlived its drain deadline, SIGKILL')
        return
      case 'crash-loop': {
        const { crashWeight, maxCrashes, windowMs, lastError } = note
        log.error(
          { crashWeight, maxCrashes, windowMs, lastError },
          `crash loop: workers keep dying (weight ${crashWeight} ≥ ${maxCrashes} within ${windowMs} ms), not forking again; last error: ${lastError}`,
        )
        this.#stats.crashLoop = true
        this.#publish('crash-loop', { crashWeight, windowMs, lastError })
        void this.shutdown('crash-loop').then((code) => process.exit(code))
        return
      }
      default:
        note satisfies never
    }
  }

  /**
   * Emits a public event once the current transition finished: a listener that throws, or calls
   * reload() or shutdown(), never runs in the middle of the slot machine's bookkeeping. A throwing
   * listener is logged; it never takes the primary down.
   */
  #publish<K extends keyof PrimaryEvents>(event: K, ...args: PrimaryEvents[K]): void {
    const emit = this.emit.bind(this) as (event: K, ...args: PrimaryEvents[K]) => boolean
    queueMicrotask(() => {
      try {
        emit(event, ...args)
      } catch (err) {
        this.#log.error({ err, event }, `a listener for the '${String(event)}' event threw`)
      }
    })
  }

  /** False when the message could not be handed to the channel. */
  #send(worker: Worker, message: PrimaryMessage): boolean {
    if (!worker.isConnected()) return false
    try {
      worker.send(message)
      return true
    } catch (err) {
      this.#log.debug({ err, pid: worker.process.pid }, 'could not send to worker')
      return false
    }
  }

  #broadcast(message: PrimaryMessage): void {
    for (const worker of this.#processes.values()) this.#send(worker, message)
  }

  #onMessage(key: number, raw: unknown): void {
    const worker = this.#processes.get(key)
    if (!worker) return
    const message: WorkerMessage | null = parseWorkerMessage(raw)
    if (!message) {
      if (isShoalMessage(raw)) this.#log.warn({ pid: worker.process.pid }, 'ignored a malformed shoal message from a worker')
      return
    }
    switch (message.type) {
      case 'hello':
        this.#send(worker, { shoal: 1, type: 'shared-snapshot', entries: this.#store.snapshot() })
        return
      case 'ready':
        this.#machine.ready(key, message.address)
        return
      case 'draining':
        this.#stats.drainStarted(key, Date.now())
        this.#machine.drainAnnounced(key, message.deadlineMs, message.fatal)
        return
      case 'request':
        if (message.cmd === 'shoal:metrics' && !Object.hasOwn(this.#opts.handlers, message.cmd)) {
          void this.#answerMetrics(worker, message.id, message.payload)
          return
        }
        void this.#answer(worker, message.id, message.cmd, message.payload)
        return
      case 'pong':
        this.#onPong(key, message.rssBytes, message.loopDelayMs, message.upgraded)
        return
      case 'fatal':
        this.#machine.fatal(key, message.message)
        return
      case 'answer':
        this.#asks.answered(key, message.id, message)
        return
      case 'listen-failed':
        this.#machine.fatal(key, message.message)
        this.#listenFailed(message.message)
        return
      default:
        message satisfies never
    }
  }

  /**
   * A worker could not listen while the cluster starts (a port in use, no permission): no respawn can
   * fix that, so say it once, stop the cluster, and let start() reject. Later it is a failed boot.
   */
  #listenFailed(message: string): void {
    if (this.#state !== 'starting' || this.#startError) return
    this.#startError = new ShoalError(codes.SHOAL_ERR_LISTEN, message)
    this.#log.error({ pid: process.pid }, `${message}; stopping the cluster`)
    void this.shutdown('listen-failed')
  }

  async #answer(worker: Worker, id: number, cmd: string, payload: unknown): Promise<void> {
    const slot = this.#machine.worker(worker.id)?.slot ?? -1
    const info = { slot, workerId: worker.id, pid: worker.process.pid ?? -1 }
    const answer = await answerCommand(this.#opts.handlers, this.#builtins, cmd, payload, info, this.#log)
    this.#send(worker, { shoal: 1, type: 'response', id, ...answer })
  }

  /**
   * A scrape of /metrics (@shoal/metrics). Answered without `answerCommand`'s re-encoding: the answer
   * is what workers sent over IPC (JSON already) and shoal's own finite numbers, and walking every
   * sample of every worker three more times would be most of the primary's cost per scrape.
   */
  async #answerMetrics(worker: Worker, id: number, payload: unknown): Promise<void> {
    try {
      const answer = await this.#collectMetrics(metricsTimeoutMs(payload))
      this.#send(worker, { shoal: 1, type: 'response', id, ok: true, value: await this.#renderMetrics(answer, metricsPerWorker(payload)) })
    } catch (err) {
      // Never an unhandled rejection in the primary: the scrape fails, the cluster does not.
      const error = { code: codes.SHOAL_ERR_HANDLER_FAILED, message: `collecting metrics failed: ${errorMessage(err)}` }
      this.#send(worker, { shoal: 1, type: 'response', id, ok: false, error })
    }
  }

  /** The text, where `@shoal/metrics` is loaded here; else (or if rendering fails) the answer for the worker to merge. */
  async #renderMetrics(answer: ClusterMetricsAnswer, perWorker: boolean): Promise<ClusterMetricsAnswer | { rendered: RenderedMetrics }> {
    const render = metricsRenderer()
    if (!render) return answer
    try {
      return { rendered: await render(answer, perWorker) }
    } catch (err) {
      this.#log.warn({ err }, 'the primary could not merge the metrics; the scraping worker merges them')
      return answer
    }
  }

  /**
   * One scrape: asks every serving worker (draining ones too: they still serve) in parallel, each
   * within `timeoutMs`; a slow one never fails the scrape. A worker still starting is not asked: it
   * may be loading its code for a while (a reload's replacement) and has served nothing yet. A worker
   * that registered no metrics answers `SHOAL_ERR_UNKNOWN_COMMAND` at once: empty.
   */
  async #collectMetrics(timeoutMs: number): Promise<ClusterMetricsAnswer> {
    const keys = this.#metrics
      .keys()
      .filter((key) => this.#machine.worker(key)?.phase !== 'starting' && this.#processes.get(key)?.isConnected())
    const results = await Promise.all(
      keys.map((key) =>
        this.#asks.askWorker(key, 'shoal:metrics', timeoutMs).then(
          (value): Collected => ({ key, outcome: 'answered', value }),
          (err: unknown): Collected => {
            const code = err instanceof ShoalError ? err.code : undefined
            if (code === codes.SHOAL_ERR_UNKNOWN_COMMAND) return { key, outcome: 'empty' }
            if (code === codes.SHOAL_ERR_CHANNEL_CLOSED) return { key, outcome: 'gone' }
            // Slow, abandoned by a shutdown (its final values are on their way), or its collect failed: its last values stand in.
            if (code !== codes.SHOAL_ERR_REQUEST_TIMEOUT && code !== codes.SHOAL_ERR_SHUTTING_DOWN)
              this.#log.warn({ err, workerId: key }, 'a worker could not report its metrics')
            return { key, outcome: 'timed_out' }
          },
        ),
      ),
    )
    const failures = this.#store.failures()
    return this.#metrics.settle(results, (scrape) => ownMetrics(this.status(), this.#stats, { ...scrape, failures }, Date.now()))
  }

  #warnAboutDeadlines(): void {
    const { readinessDelayMs, shutdownTimeoutMs } = this.#opts
    const worstMs = readinessDelayMs + shutdownTimeoutMs + KILL_MARGIN_MS
    if (worstMs > 30_000) {
      this.#log.warn(
        { readinessDelayMs, shutdownTimeoutMs, worstMs },
        'readinessDelayMs + shutdownTimeoutMs (+2 s kill margin) exceed 30 s, Kubernetes’ default terminationGracePeriodSeconds: raise it or the pod is killed mid-drain',
      )
    }
  }

  /** Pings every serving worker; one whose event loop stayed silent too long is stuck. */
  #startHeartbeat(): void {
    const beat = this.#opts.heartbeat
    if (!beat) return
    const stuckAfterMs = beat.intervalMs * beat.maxMissed
    this.#heartbeat = setInterval(() => {
      const now = Date.now()
      const seq = ++this.#seq
      for (const w of this.#machine.workers()) {
        if (w.role !== 'current' || w.phase !== 'ready') continue
        const silentMs = now - (this.#beats.get(w.key)?.lastBeatAt ?? now)
        if (silentMs > stuckAfterMs) {
          this.#machine.stuck(w.key, silentMs)
          continue
        }
        const worker = this.#processes.get(w.key)
        if (worker) this.#send(worker, { shoal: 1, type: 'ping', seq })
      }
    }, beat.intervalMs)
    this.#heartbeat.unref()
  }

  #onPong(key: number, rssBytes: number, loopDelayMs: number, upgraded: number): void {
    const beat = this.#beats.get(key)
    if (!beat) return
    beat.lastBeatAt = Date.now()
    beat.rssBytes = rssBytes
    beat.loopDelayMs = loopDelayMs
    beat.upgraded = upgraded
    const limitMb = this.#plan?.maxMemoryMb
    if (limitMb === undefined || rssBytes <= limitMb * 1024 * 1024 || this.#reloads.busy || this.#shutdown) return
    const serving = this.#machine.worker(key)
    if (serving?.role !== 'current' || serving.phase !== 'ready' || this.#refreshing.has(serving.slot)) return
    const slot = serving.slot
    this.#refreshing.add(slot)
    this.#stats.restart('memory')
    const rssMb = Math.round(rssBytes / 1024 / 1024)
    this.#log.warn({ slot, pid: serving.pid, rssMb, maxMemoryMb: limitMb }, 'worker over maxMemoryMb, replacing it gracefully')
    this.#machine
      .refresh(slot, 'reload')
      .catch((err: unknown) => {
        this.#log.error({ slot, reason: errorMessage(err) }, 'could not replace the worker over maxMemoryMb; it keeps serving')
      })
      .finally(() => this.#refreshing.delete(slot))
  }

  async #reload(): Promise<ReloadOutcome> {
    const started = Date.now()
    const generation = ++this.#machine.generation
    const total = this.#machine.size
    let done = 0
    this.#log.info({ generation, workers: total }, 'rolling reload started')
    this.#publish('reload-start', { generation })
    try {
      await replaceAll(
        Array.from({ length: total }, (_, i) => i),
        this.#opts.reloadConcurrency,
        async (slot) => {
          await this.#machine.replace(slot, 'reload')
          done++
          this.#publish('reload-progress', { generation, slot, pid: this.#machine.serving(slot)?.pid ?? -1, done, total })
        },
      )
    } catch (err) {
      const reason = errorMessage(err)
      const slot = err instanceof SlotError ? err.slot : -1
      this.#log.error({ generation, slot, reason }, 'rolling reload failed, old workers keep serving')
      this.#stats.reload('failed', Date.now() - started)
      this.#publish('reload-failed', { generation, slot, reason })
      throw new ShoalError(codes.SHOAL_ERR_RELOAD_FAILED, `rolling reload failed at slot ${slot}: ${reason}`, { cause: err })
    }
    const outcome = { generation, durationMs: Date.now() - started, replaced: done }
    this.#stats.reload('done', outcome.durationMs)
    this.#log.info(outcome, 'rolling reload done')
    this.#publish('reload-done', outcome)
    return outcome
  }
}
