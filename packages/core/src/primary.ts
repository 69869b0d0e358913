import cluster, { type Worker } from 'node:cluster'
import { EventEmitter } from 'node:events'
import { CrashWindow, crashWeight, restartDelayMs } from './backoff.js'
import { errorMessage, unknownCommand } from './context.js'
import { codes, ShoalError } from './errors.js'
import type { Logger } from './logger.js'
import type { RequestHandler, ResolvedOptions } from './options.js'
import { isShoalMessage, type PrimaryMessage, parseWorkerMessage, type WorkerMessage } from './protocol.js'
import { ReloadQueue, replaceAll } from './reload.js'
import { jsonProblem } from './serialize.js'
import { SharedStore } from './shared.js'
import { installPrimarySignals } from './signals.js'

/** A worker that outlives its drain deadline by this much is SIGKILLed. */
export const KILL_MARGIN_MS = 2000

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
}

export interface ClusterStatus {
  state: 'starting' | 'running' | 'stopping'
  reloading: boolean
  generation: number
  target: number
  workers: WorkerStatus[]
  shared: Record<string, { version: number; updatedAt: number }>
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
  'restart-scheduled': [{ slot: number; delayMs: number; consecutiveCrashes: number }]
  'crash-loop': [{ crashWeight: number; windowMs: number; lastError: string }]
  shutdown: [{ reason: string; code: number }]
  'reload-start': [{ generation: number }]
  'reload-progress': [{ generation: number; slot: number; pid: number; done: number; total: number }]
  'reload-done': [ReloadOutcome]
  'reload-failed': [{ generation: number; slot: number; reason: string }]
}

interface Entry {
  worker: Worker
  slot: number
  pid: number
  generation: number
  state: WorkerState
  startedAt: number
  readyAt: number | undefined
  address: string | undefined
  /** The primary asked it to go (reload, shutdown) or it announced a drain: its exit is no crash. */
  planned: boolean
  /** 0 for a clean exit, 1 for any other code or a signal; set when it exits. */
  exitCode: number | undefined
  lastError: string | undefined
  rssBytes: number | undefined
  loopDelayMs: number | undefined
  lastBeatAt: number
  /** Being replaced (memory ceiling, stuck): no second replacement. */
  replacing: boolean
  readyTimer: NodeJS.Timeout | undefined
  killTimer: NodeJS.Timeout | undefined
  whenReady: { resolve: () => void; reject: (err: Error) => void } | undefined
  exited: Promise<void>
  markExited: () => void
}

interface Slot {
  index: number
  active: Entry | undefined
  consecutiveCrashes: number
  restarts: number
  restartTimer: NodeJS.Timeout | undefined
}

/** The handle `runCluster` / `clusteredListen` resolve to in the primary. */
export class Primary extends EventEmitter<PrimaryEvents> {
  readonly role = 'primary' as const
  readonly #opts: ResolvedOptions
  readonly #log: Logger
  readonly #slots: Slot[]
  readonly #entries = new Set<Entry>()
  readonly #crashes: CrashWindow
  readonly #store: SharedStore
  readonly #reloads: ReloadQueue<ReloadOutcome>
  #state: ClusterStatus['state'] = 'starting'
  #generation = 0
  #shutdown: Promise<number> | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #seq = 0
  #started: { resolve: () => void; promise: Promise<void> }

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
    this.#crashes = new CrashWindow(opts.crashLoop)
    this.#slots = Array.from({ length: opts.workers }, (_, index) => ({
      index,
      active: undefined,
      consecutiveCrashes: 0,
      restarts: 0,
      restartTimer: undefined,
    }))
    this.#store = new SharedStore(opts.shared, opts.logger, (name, entry) =>
      this.#broadcast({ shoal: 1, type: 'shared-update', name, entry }),
    )
    this.shared = { set: (name, value) => this.#store.set(name, value), get: (name) => this.#store.get(name) }
    this.#reloads = new ReloadQueue(() => this.#reload())
    let resolve = () => {}
    const promise = new Promise<void>((r) => {
      resolve = r
    })
    this.#started = { resolve, promise }
  }

  /** Computes shared values, forks every slot, resolves when each slot has been ready once. */
  async start(): Promise<this> {
    // Round-robin everywhere: Windows' default (SCHED_NONE) lets one worker take most connections.
    cluster.schedulingPolicy = cluster.SCHED_RR
    cluster.setupPrimary({ exec: this.#opts.exec, args: this.#opts.args })
    if (this.#opts.signals) installPrimarySignals(this, this.#log)
    this.#warnAboutDeadlines()
    await this.#store.start()
    for (const slot of this.#slots) this.#forkSlot(slot)
    this.#startHeartbeat()
    await this.#started.promise
    if (this.#state === 'starting') {
      this.#state = 'running'
      this.#log.info({ workers: this.#slots.length, pid: process.pid }, 'cluster ready')
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
      generation: this.#generation,
      target: this.#slots.length,
      workers: [...this.#entries]
        .filter((e) => e.state !== 'exited')
        .sort((a, b) => a.slot - b.slot || a.startedAt - b.startedAt)
        .map((e) => ({
          slot: e.slot,
          workerId: e.worker.id,
          pid: e.pid,
          state: e.state,
          generation: e.generation,
          uptimeMs: now - e.startedAt,
          restarts: this.#slots[e.slot]?.restarts ?? 0,
          address: e.address,
          rssBytes: e.rssBytes,
          loopDelayMs: e.loopDelayMs,
        })),
      shared,
    }
  }

  /**
   * Rolling reload: per slot, fork the replacement, wait until it is ready, then drain the old one.
   * A replacement that crashes or is not ready in `readyTimeoutMs` stops the reload and the old
   * workers keep serving; the promise rejects with `SHOAL_ERR_RELOAD_FAILED`. Requests made while a
   * reload runs share one follow-up reload. Workers load code from disk; the primary's own code is not reloaded.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.#shutdown) return Promise.reject(new ShoalError(codes.SHOAL_ERR_SHUTTING_DOWN, 'cannot reload: the cluster is shutting down'))
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
    for (const entry of this.#entries) if (entry.state !== 'exited') entry.worker.process.kill('SIGKILL')
  }

  async #stopAll(reason: string): Promise<number> {
    this.#state = 'stopping'
    this.#log.info({ reason, workers: this.#live().length }, 'shutting down')
    this.#store.stop()
    clearInterval(this.#heartbeat)
    for (const slot of this.#slots) clearTimeout(slot.restartTimer)
    const delayMs = this.#opts.readinessDelayMs
    if (delayMs > 0) {
      // Readiness turns 503 everywhere while the listeners stay open, so the platform's endpoint
      // update lands before any connection is refused.
      this.#broadcast({ shoal: 1, type: 'not-ready' })
      this.#log.info({ readinessDelayMs: delayMs }, 'readiness is 503, draining after the readiness delay')
      await new Promise((resolve) => setTimeout(resolve, delayMs))
    }
    let clean = true
    await Promise.all(
      this.#live().map(async (entry) => {
        const code = await this.#retire(entry, reason)
        if (code !== 0) clean = false
      }),
    )
    const code = clean ? 0 : 1
    this.#log.info({ reason, code }, 'cluster stopped')
    this.emit('shutdown', { reason, code })
    this.#started.resolve()
    return code
  }

  #live(): Entry[] {
    return [...this.#entries].filter((e) => e.state !== 'exited')
  }

  /** A `replacement` (rolling reload, memory ceiling) only takes the slot once it is ready. */
  #forkSlot(slot: Slot, replacement = false): Entry {
    const worker = cluster.fork({
      ...this.#opts.env,
      SHOAL_WORKER_INDEX: String(slot.index),
      SHOAL_GENERATION: String(this.#generation),
    })
    let markExited = () => {}
    const exited = new Promise<void>((resolve) => {
      markExited = resolve
    })
    const entry: Entry = {
      worker,
      slot: slot.index,
      pid: worker.process.pid ?? -1,
      generation: this.#generation,
      state: 'starting',
      startedAt: Date.now(),
      readyAt: undefined,
      address: undefined,
      planned: false,
      exitCode: undefined,
      lastError: undefined,
      rssBytes: undefined,
      loopDelayMs: undefined,
      lastBeatAt: Date.now(),
      replacing: false,
      readyTimer: undefined,
      killTimer: undefined,
      whenReady: undefined,
      exited,
      markExited,
    }
    this.#entries.add(entry)
    if (!replacement) slot.active = entry
    worker.on('message', (message: unknown) => this.#onMessage(entry, message))
    worker.on('exit', (code: number | null, signal: string | null) => this.#onExit(entry, code, signal))
    // An IPC write to a dying worker must not take the primary down.
    worker.on('error', (err: Error) => this.#log.debug({ err, slot: slot.index, pid: entry.pid }, 'worker channel error'))
    entry.readyTimer = setTimeout(() => {
      if (entry.state !== 'starting') return
      entry.lastError = `not ready within readyTimeoutMs (${this.#opts.readyTimeoutMs} ms); a worker reports ready through clusteredListen() or serve()`
      this.#log.error({ slot: slot.index, pid: entry.pid }, `worker ${entry.lastError}, killing it`)
      worker.process.kill('SIGKILL')
    }, this.#opts.readyTimeoutMs)
    this.#log.debug({ slot: slot.index, pid: entry.pid, generation: entry.generation }, 'forked worker')
    this.emit('fork', { slot: slot.index, workerId: worker.id, pid: entry.pid, generation: entry.generation })
    return entry
  }

  #send(entry: Entry, message: PrimaryMessage): void {
    if (entry.state === 'exited' || !entry.worker.isConnected()) return
    try {
      entry.worker.send(message)
    } catch (err) {
      this.#log.debug({ err, pid: entry.pid }, 'could not send to worker')
    }
  }

  #broadcast(message: PrimaryMessage): void {
    for (const entry of this.#entries) this.#send(entry, message)
  }

  #onMessage(entry: Entry, raw: unknown): void {
    const message: WorkerMessage | null = parseWorkerMessage(raw)
    if (!message) {
      if (isShoalMessage(raw)) {
        this.#log.warn({ slot: entry.slot, pid: entry.pid }, 'ignored a malformed shoal message from a worker')
      }
      return
    }
    switch (message.type) {
      case 'hello':
        this.#send(entry, { shoal: 1, type: 'shared-snapshot', entries: this.#store.snapshot() })
        return
      case 'ready':
        this.#onReady(entry, message.address)
        return
      case 'draining':
        entry.planned = true
        if (entry.state !== 'exited') entry.state = 'draining'
        return
      case 'request':
        void this.#answer(entry, message.id, message.cmd, message.payload)
        return
      case 'pong':
        this.#onPong(entry, message.rssBytes, message.loopDelayMs)
        return
      case 'fatal':
        entry.lastError = message.message
        return
      default:
        message satisfies never
    }
  }

  #onReady(entry: Entry, address: string): void {
    if (entry.state !== 'starting') return
    clearTimeout(entry.readyTimer)
    entry.state = 'ready'
    entry.readyAt = Date.now()
    entry.lastBeatAt = entry.readyAt
    entry.address = address
    this.#log.info({ slot: entry.slot, pid: entry.pid, address, generation: entry.generation }, 'worker ready')
    this.emit('ready', { slot: entry.slot, workerId: entry.worker.id, pid: entry.pid, generation: entry.generation, address })
    entry.whenReady?.resolve()
    if (this.#slots.every((s) => s.active?.readyAt !== undefined)) this.#started.resolve()
  }

  async #answer(entry: Entry, id: number, cmd: string, payload: unknown): Promise<void> {
    const reply = (message: PrimaryMessage) => this.#send(entry, message)
    const handler = this.#opts.handlers[cmd] ?? this.#builtins[cmd]
    if (!handler) {
      const err = unknownCommand(cmd)
      reply({ shoal: 1, type: 'response', id, ok: false, error: { code: err.code, message: err.message } })
      return
    }
    try {
      const value = await handler(payload, { slot: entry.slot, workerId: entry.worker.id, pid: entry.pid })
      const problem = value === undefined ? null : jsonProblem(value)
      if (problem) {
        const message = `handler for "${cmd}" returned a value that cannot be sent: ${problem}`
        this.#log.error({ cmd }, message)
        reply({ shoal: 1, type: 'response', id, ok: false, error: { code: codes.SHOAL_ERR_NOT_SERIALIZABLE, message } })
        return
      }
      reply({ shoal: 1, type: 'response', id, ok: true, value })
    } catch (err) {
      const message = `handler for "${cmd}" failed: ${errorMessage(err)}`
      reply({ shoal: 1, type: 'response', id, ok: false, error: { code: codes.SHOAL_ERR_HANDLER_FAILED, message } })
    }
  }

  #onExit(entry: Entry, code: number | null, signal: string | null): void {
    clearTimeout(entry.readyTimer)
    clearTimeout(entry.killTimer)
    const wasReady = entry.readyAt !== undefined
    entry.exitCode = signal || code !== 0 ? 1 : 0
    entry.state = 'exited'
    this.#entries.delete(entry)
    entry.markExited()
    const slot = this.#slots[entry.slot]
    const planned = entry.planned || this.#shutdown !== undefined
    this.emit('exit', { slot: entry.slot, workerId: entry.worker.id, pid: entry.pid, code, signal, planned })
    const how = signal ? `signal ${signal}` : `code ${code}`
    if (entry.whenReady) {
      entry.whenReady.reject(
        new Error(entry.lastError ? `exited with ${how}: ${firstLine(entry.lastError)}` : `exited with ${how} before it was ready`),
      )
    }
    if (!slot || this.#shutdown || slot.active !== entry) return

    slot.active = undefined
    if (entry.planned && wasReady) {
      // It drained on purpose (a SIGTERM aimed at it): replace it at once, no crash counted.
      this.#log.info({ slot: slot.index, pid: entry.pid }, 'worker drained and exited, replacing it')
      this.#forkSlot(slot)
      return
    }
    const now = Date.now()
    if (entry.readyAt !== undefined && now - entry.readyAt >= this.#opts.restartBackoff.healthyAfterMs) slot.consecutiveCrashes = 0
    slot.consecutiveCrashes++
    slot.restarts++
    const lastError = entry.lastError ? firstLine(entry.lastError) : `exited with ${how}${wasReady ? '' : ' before it was ready'}`
    this.#log.warn({ slot: slot.index, pid: entry.pid, code, signal, ready: wasReady }, `worker crashed: ${lastError}`)
    if (this.#crashes.record(now, crashWeight(wasReady))) {
      this.#crashLoop(lastError)
      return
    }
    const delayMs = restartDelayMs(slot.consecutiveCrashes, this.#opts.restartBackoff)
    this.emit('restart-scheduled', { slot: slot.index, delayMs, consecutiveCrashes: slot.consecutiveCrashes })
    if (delayMs === 0) {
      this.#forkSlot(slot)
      return
    }
    this.#log.info({ slot: slot.index, delayMs }, 'restart scheduled')
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined
      if (!this.#shutdown) this.#forkSlot(slot)
    }, delayMs)
  }

  #crashLoop(lastError: string): void {
    const { maxCrashes, windowMs } = this.#opts.crashLoop
    const weight = this.#crashes.weight()
    this.#log.error(
      { crashWeight: weight, maxCrashes, windowMs, lastError },
      `crash loop: workers keep dying (weight ${weight} ≥ ${maxCrashes} within ${windowMs} ms), not forking again; last error: ${lastError}`,
    )
    this.emit('crash-loop', { crashWeight: weight, windowMs, lastError })
    void this.shutdown('crash-loop').then(() => process.exit(1))
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

  #startHeartbeat(): void {
    const beat = this.#opts.heartbeat
    if (!beat) return
    const stuckAfterMs = beat.intervalMs * beat.maxMissed
    this.#heartbeat = setInterval(() => {
      const now = Date.now()
      const seq = ++this.#seq
      for (const entry of this.#entries) {
        if (entry.state !== 'ready') continue
        if (!entry.replacing && now - entry.lastBeatAt > stuckAfterMs) {
          this.#replaceStuck(entry, now - entry.lastBeatAt)
          continue
        }
        this.#send(entry, { shoal: 1, type: 'ping', seq })
      }
    }, beat.intervalMs)
    this.#heartbeat.unref()
  }

  #onPong(entry: Entry, rssBytes: number, loopDelayMs: number): void {
    entry.lastBeatAt = Date.now()
    entry.rssBytes = rssBytes
    entry.loopDelayMs = loopDelayMs
    const limitMb = this.#opts.maxMemoryMb
    if (limitMb === undefined || entry.replacing || entry.state !== 'ready' || this.#shutdown) return
    if (rssBytes <= limitMb * 1024 * 1024 || this.#reloads.busy) return
    const slot = this.#slots[entry.slot]
    if (!slot || slot.active !== entry) return
    entry.replacing = true
    const rssMb = Math.round(rssBytes / 1024 / 1024)
    this.#log.warn({ slot: entry.slot, pid: entry.pid, rssMb, maxMemoryMb: limitMb }, 'worker over maxMemoryMb, replacing it gracefully')
    this.#replace(slot, entry.generation).catch((err: unknown) => {
      entry.replacing = false
      this.#log.error({ slot: entry.slot, reason: errorMessage(err) }, 'could not replace the worker over maxMemoryMb; it keeps serving')
    })
  }

  /** A worker whose event loop stopped answering cannot drain: fork a fresh one, kill the stuck one. */
  #replaceStuck(entry: Entry, silentMs: number): void {
    entry.replacing = true
    entry.planned = true
    this.#log.error(
      { slot: entry.slot, pid: entry.pid, stuckMs: silentMs },
      `worker stuck: event loop silent for ${silentMs} ms, replacing it`,
    )
    const slot = this.#slots[entry.slot]
    if (slot && slot.active === entry && !this.#shutdown) {
      slot.restarts++
      if (this.#crashes.record(Date.now(), 1)) {
        entry.worker.process.kill('SIGKILL')
        this.#crashLoop(`worker stuck for ${silentMs} ms`)
        return
      }
      this.#forkSlot(slot)
    }
    entry.worker.process.kill('SIGKILL')
  }

  /** Asks a worker to drain and resolves with its exit code once it is gone (SIGKILL after the deadline). */
  #retire(entry: Entry, reason: string): Promise<number> {
    if (entry.state !== 'exited') {
      entry.planned = true
      if (entry.state === 'starting') {
        // Not serving yet: nothing to drain.
        entry.worker.process.kill('SIGKILL')
      } else {
        entry.state = 'draining'
        this.#send(entry, { shoal: 1, type: 'shutdown', reason, shutdownTimeoutMs: this.#opts.shutdownTimeoutMs })
        clearTimeout(entry.killTimer)
        entry.killTimer = setTimeout(() => {
          this.#log.warn({ slot: entry.slot, pid: entry.pid }, 'worker outlived its drain deadline, SIGKILL')
          entry.worker.process.kill('SIGKILL')
        }, this.#opts.shutdownTimeoutMs + KILL_MARGIN_MS)
      }
    }
    // A worker killed before it ever served had nothing to drain: that is no unclean exit.
    return entry.exited.then(() => (entry.readyAt === undefined ? 0 : (entry.exitCode ?? 1)))
  }

  async #reload(): Promise<ReloadOutcome> {
    const started = Date.now()
    const generation = ++this.#generation
    const total = this.#slots.length
    let done = 0
    this.#log.info({ generation, workers: total }, 'rolling reload started')
    this.emit('reload-start', { generation })
    try {
      await replaceAll(
        this.#slots.map((s) => s.index),
        this.#opts.reloadConcurrency,
        async (index) => {
          const slot = this.#slots[index] as Slot
          const old = slot.active
          if (old && old.generation >= generation) {
            done++
            return // respawned during this reload: already on the new code
          }
          const fresh = await this.#replace(slot, generation)
          done++
          this.emit('reload-progress', { generation, slot: index, pid: fresh.pid, done, total })
        },
      )
    } catch (err) {
      const reason = errorMessage(err)
      const slot = (err as { slot?: number }).slot ?? -1
      this.#log.error({ generation, slot, reason }, 'rolling reload failed, old workers keep serving')
      this.emit('reload-failed', { generation, slot, reason })
      throw new ShoalError(codes.SHOAL_ERR_RELOAD_FAILED, `rolling reload failed at slot ${slot}: ${reason}`, { cause: err })
    }
    const outcome = { generation, durationMs: Date.now() - started, replaced: done }
    this.#log.info(outcome, 'rolling reload done')
    this.emit('reload-done', outcome)
    return outcome
  }

  /** Forks a replacement for `slot`, waits until it is ready, then drains the old worker. */
  async #replace(slot: Slot, generation: number): Promise<Entry> {
    if (this.#shutdown) throw Object.assign(new Error('the cluster is shutting down'), { slot: slot.index })
    const fresh = this.#forkSlot(slot, true)
    try {
      await new Promise<void>((resolve, reject) => {
        fresh.whenReady = { resolve, reject }
      })
    } catch (err) {
      fresh.planned = true
      if (fresh.state !== 'exited') fresh.worker.process.kill('SIGKILL')
      await fresh.exited
      throw Object.assign(new Error(`new worker ${errorMessage(err)}`), { slot: slot.index })
    } finally {
      fresh.whenReady = undefined
    }
    if (this.#shutdown) {
      // Shutdown began while it booted: it is retired with the rest.
      return fresh
    }
    fresh.generation = generation
    const old = slot.active
    slot.active = fresh
    slot.consecutiveCrashes = 0
    if (old && old.state !== 'exited') await this.#retire(old, 'reload')
    return fresh
  }
}

function firstLine(text: string): string {
  const lines = text.split('\n')
  return lines.slice(0, 2).join(' | ').slice(0, 500)
}
