/**
 * The slot lifecycle: who owns each slot, as one explicit state machine. Pure logic: processes,
 * timers and the clock come in through `SlotHost`, so every race is a unit test (slots.test.ts).
 *
 * A slot is in exactly one of these states (derived from `current`, `candidate` and `backoff`):
 *
 * | state      | current         | candidate | timer owned            |
 * | ---------- | --------------- | --------- | ---------------------- |
 * | empty      | —               | —         | — (shutting down / stopped by the crash-loop breaker) |
 * | backoff    | —               | —         | restart delay          |
 * | starting   | starting worker | maybe     | the worker's ready timeout |
 * | ready      | ready worker    | maybe     | —                      |
 *
 * A candidate is a surge replacement (rolling reload, memory ceiling) that boots while the current
 * worker serves; it owns its ready timeout. A worker that leaves a slot is *retiring* until it exits
 * and owns its kill timer (its drain deadline + KILL_MARGIN_MS). Every timer belongs to the state that
 * armed it and is cancelled on leaving it; every event for a worker that already left that state is
 * ignored, so any event may arrive twice or late.
 *
 * | event                         | in state / role        | transition                                                          |
 * | ----------------------------- | ---------------------- | ------------------------------------------------------------------- |
 * | start                         | empty                  | → starting (spawn)                                                  |
 * | ready                         | current starting       | → ready                                                             |
 * | ready                         | candidate              | candidate → current (ready); old current → retiring (asked to drain) |
 * | ready timeout                 | starting worker        | SIGKILL; its exit is a failed boot                                  |
 * | exit / spawn error            | current                | lost (crash, unless stopping) → candidate promoted, or → starting now, or → backoff |
 * | exit / spawn error            | candidate              | its replacement fails; current keeps serving, no crash counted      |
 * | exit                          | retiring               | gone; the slot does not change                                      |
 * | drain announced (not asked)   | current                | → retiring (kill timer); replacement forked at once (a crash if fatal) |
 * | drain announced               | candidate              | → retiring; its replacement fails                                   |
 * | handover asked (SIGTERM)      | current ready          | + candidate (spawn); it serves until the candidate is ready         |
 * | heartbeat missed              | current ready          | → retiring (SIGKILL now); lost as a crash                           |
 * | backoff timer                 | backoff                | → starting (spawn)                                                  |
 * | replace (reload, memory)      | ready                  | + candidate (spawn); resolves once the old worker exited            |
 * | replace                       | starting (older code)  | its worker killed (planned) → starting with the new code            |
 * | replace                       | backoff                | timer cancelled → starting with the new code                        |
 * | replace                       | empty                  | rejects                                                             |
 * | shutdown                      | any                    | backoff cancelled, starting workers killed, ready ones asked to drain → empty |
 * | crash-loop breaker trips      | any                    | stop spawning; the owner shuts the cluster down                     |
 */

import type { BackoffPolicy, CrashLoopPolicy } from './backoff.js'
import { CrashWindow, crashWeight, restartDelayMs } from './backoff.js'

/** A worker that outlives its drain deadline by this much is SIGKILLed. */
export const KILL_MARGIN_MS = 2000

export interface Timer {
  cancel(): void
}

/** What the machine needs from the outside world. */
export interface SlotHost {
  /** Forks a worker for `slot`; returns its key (node:cluster's id) and pid. May throw (a spawn error). */
  spawn(slot: number, generation: number): { key: number; pid: number | undefined }
  /** SIGKILL. */
  kill(key: number): void
  /** Asks a worker to drain and exit. */
  drain(key: number, reason: string, deadlineMs: number): void
  setTimer(ms: number, fn: () => void): Timer
  now(): number
  /** Everything that happened, for logs and the Primary's events. */
  notify(note: SlotNote): void
}

export interface SlotPolicy {
  readyTimeoutMs: number
  shutdownTimeoutMs: number
  restartBackoff: BackoffPolicy
  crashLoop: CrashLoopPolicy
}

export type WorkerPhase = 'starting' | 'ready' | 'draining'
export type WorkerRole = 'current' | 'candidate' | 'retiring'

export interface WorkerView {
  key: number
  pid: number | undefined
  slot: number
  generation: number
  phase: WorkerPhase
  role: WorkerRole
  startedAt: number
  readyAt: number | undefined
  address: string | undefined
}

export type SlotNote =
  | { type: 'fork'; slot: number; key: number; pid: number | undefined; generation: number }
  | { type: 'spawn-error'; slot: number; key: number | undefined; error: string }
  | { type: 'ready'; slot: number; key: number; pid: number | undefined; generation: number; address: string; allReady: boolean }
  | { type: 'ready-timeout'; slot: number; key: number; pid: number | undefined; error: string }
  | {
      type: 'exit'
      slot: number
      key: number
      pid: number | undefined
      code: number | null
      signal: string | null
      planned: boolean
      role: WorkerRole
    }
  | { type: 'crash'; slot: number; key: number; pid: number | undefined; ready: boolean; reason: string }
  | { type: 'restart-scheduled'; slot: number; delayMs: number; consecutiveCrashes: number }
  | { type: 'self-drain'; slot: number; key: number; pid: number | undefined; fatal: boolean }
  | { type: 'stuck'; slot: number; key: number; pid: number | undefined; silentMs: number }
  | { type: 'kill-deadline'; slot: number; key: number; pid: number | undefined }
  | { type: 'crash-loop'; crashWeight: number; maxCrashes: number; windowMs: number; lastError: string }

interface WorkerRecord extends WorkerView {
  /** The ready timeout (starting) or the kill timer (draining): owned by the phase, cancelled on leaving it. */
  timer: Timer | undefined
  /** The primary asked it to go or killed it on purpose (reload, shutdown, failed candidate), or it drained by itself without a fault. */
  planned: boolean
  lastError: string | undefined
  /** 0 for a clean exit, 1 otherwise; set when it is gone. */
  exitCode: number | undefined
  /** Why the primary asked it to drain, for the reason a promoted candidate sends its predecessor. */
  drainReason: string
  waiters: { resolve: () => void; reject: (err: Error) => void }[]
  gone: boolean
  exited: Promise<void>
  markExited: () => void
}

interface Slot {
  index: number
  current: WorkerRecord | undefined
  candidate: WorkerRecord | undefined
  backoff: Timer | undefined
  consecutiveCrashes: number
  restarts: number
}

export type SlotState = 'empty' | 'backoff' | 'starting' | 'ready'

/** A replacement that failed, with the slot it was for (the reload reports it). */
export class SlotError extends Error {
  readonly slot: number
  constructor(slot: number, message: string) {
    super(message)
    this.slot = slot
  }
}

export class SlotMachine {
  readonly #host: SlotHost
  readonly #policy: SlotPolicy
  readonly #slots: Slot[]
  readonly #workers = new Map<number, WorkerRecord>()
  readonly #crashes: CrashWindow
  #started = false
  #stopping = false
  /** The code generation new workers are forked with (+1 per rolling reload). */
  generation = 0

  constructor(count: number, policy: SlotPolicy, host: SlotHost) {
    this.#host = host
    this.#policy = policy
    this.#crashes = new CrashWindow(policy.crashLoop)
    this.#slots = Array.from({ length: count }, (_, index) => ({
      index,
      current: undefined,
      candidate: undefined,
      backoff: undefined,
      consecutiveCrashes: 0,
      restarts: 0,
    }))
  }

  get size(): number {
    return this.#slots.length
  }

  get stopping(): boolean {
    return this.#stopping
  }

  /** Forks every slot. Idempotent. */
  start(): void {
    if (this.#started || this.#stopping) return
    this.#started = true
    for (const slot of this.#slots) this.#spawnCurrent(slot)
  }

  state(index: number): SlotState {
    const slot = this.#slots[index]
    if (!slot) throw new RangeError(`no slot ${index}`)
    if (slot.current) return slot.current.phase === 'ready' ? 'ready' : 'starting'
    return slot.backoff ? 'backoff' : 'empty'
  }

  restarts(index: number): number {
    return this.#slots[index]?.restarts ?? 0
  }

  /** Every live worker: current, candidate and retiring, by slot then age. */
  workers(): WorkerView[] {
    return [...this.#workers.values()].sort((a, b) => a.slot - b.slot || a.startedAt - b.startedAt).map((w) => this.#view(w))
  }

  /** One live worker by key (node:cluster's id): what the primary needs per request and per heartbeat, without listing all. */
  worker(key: number): WorkerView | undefined {
    const w = this.#workers.get(key)
    return w && this.#view(w)
  }

  /** The ready worker that serves `index`, if any. */
  serving(index: number): WorkerView | undefined {
    const current = this.#slots[index]?.current
    return current?.phase === 'ready' ? this.#view(current) : undefined
  }

  /** True when every slot's worker has been ready (the cluster is up). */
  allReady(): boolean {
    return this.#slots.every((s) => s.current?.readyAt !== undefined)
  }

  // ─── events from the workers ────────────────────────────────────────────────

  ready(key: number, address: string): void {
    const worker = this.#workers.get(key)
    if (worker?.phase !== 'starting' || worker.role === 'retiring') return
    const slot = this.#slot(worker)
    worker.timer?.cancel()
    worker.timer = undefined
    worker.phase = 'ready'
    worker.readyAt = this.#host.now()
    worker.address = address
    if (worker.role === 'candidate') {
      const old = slot.current
      slot.candidate = undefined
      slot.current = worker
      worker.role = 'current'
      slot.consecutiveCrashes = 0
      this.#note({
        type: 'ready',
        slot: slot.index,
        key,
        pid: worker.pid,
        generation: worker.generation,
        address,
        allReady: this.allReady(),
      })
      const waiters = worker.waiters.splice(0)
      if (old) this.#retire(old, worker.drainReason)
      void (old?.exited ?? Promise.resolve()).then(() => {
        for (const w of waiters) w.resolve()
      })
      return
    }
    this.#note({ type: 'ready', slot: slot.index, key, pid: worker.pid, generation: worker.generation, address, allReady: this.allReady() })
    for (const w of worker.waiters.splice(0)) w.resolve()
  }

  /** The worker said why it is about to die (its stack, a listen error). */
  fatal(key: number, message: string): void {
    const worker = this.#workers.get(key)
    if (worker) worker.lastError = message
  }

  exited(key: number, code: number | null, signal: string | null): void {
    const worker = this.#workers.get(key)
    if (!worker) return
    worker.exitCode = signal || code !== 0 ? 1 : 0
    const how = signal ? `signal ${signal}` : `code ${code}`
    const before = worker.readyAt === undefined ? ' before it was ready' : ''
    this.#gone(worker, worker.lastError ? `exited with ${how}: ${firstLine(worker.lastError)}` : `exited with ${how}${before}`)
    this.#note({
      type: 'exit',
      slot: worker.slot,
      key,
      pid: worker.pid,
      code,
      signal,
      planned: worker.planned || this.#stopping,
      role: worker.role,
    })
    this.#afterGone(worker, how)
  }

  /** The process could not be started (ENOENT, EAGAIN, EMFILE): a failed boot; no exit event follows. */
  spawnFailed(key: number, error: string): void {
    const worker = this.#workers.get(key)
    if (!worker) return
    worker.exitCode = 1
    worker.lastError = `could not start a worker: ${error}`
    this.#gone(worker, `could not be started: ${error}`)
    this.#note({ type: 'spawn-error', slot: worker.slot, key, error })
    this.#afterGone(worker, 'a spawn error')
  }

  /** The worker started draining. Asked by the primary: nothing to do. On its own: it leaves its slot now. */
  drainAnnounced(key: number, deadlineMs: number, fatal: boolean): void {
    const worker = this.#workers.get(key)
    if (!worker || worker.role === 'retiring') return
    const slot = this.#slot(worker)
    this.#note({ type: 'self-drain', slot: slot.index, key, pid: worker.pid, fatal })
    if (!fatal) worker.planned = true
    const role = worker.role
    this.#toRetiring(worker, deadlineMs)
    if (role === 'candidate') {
      slot.candidate = undefined
      this.#reject(worker, 'new worker drained before it was ready')
      return
    }
    slot.current = undefined
    this.#lost(slot, worker, fatal, worker.lastError ? firstLine(worker.lastError) : 'uncaught exception')
  }

  /** The heartbeat found its event loop silent: it cannot drain, so it is killed and replaced. */
  stuck(key: number, silentMs: number): void {
    const worker = this.#workers.get(key)
    if (worker?.role !== 'current' || worker.phase !== 'ready') return
    const slot = this.#slot(worker)
    this.#note({ type: 'stuck', slot: slot.index, key, pid: worker.pid, silentMs })
    worker.lastError = `event loop silent for ${silentMs} ms`
    worker.planned = true // killed on purpose, yet a fault: counted as a crash below
    slot.current = undefined
    this.#toRetiring(worker, 'kill-now')
    this.#lost(slot, worker, true, `worker stuck for ${silentMs} ms`)
  }

  // ─── commands from the primary ──────────────────────────────────────────────

  /**
   * Brings `index` onto `this.generation` without dropping capacity: a serving worker is replaced by
   * a candidate that must be ready before the old one drains; a slot that serves nothing gets its
   * new worker at once. Resolves when the slot serves the new code (and the old worker exited);
   * rejects with `SlotError` when the new worker failed (the old one, if any, keeps serving).
   */
  async replace(index: number, reason: string): Promise<void> {
    const slot = this.#slots[index]
    if (!slot) throw new RangeError(`no slot ${index}`)
    const generation = this.generation
    for (;;) {
      if (this.#stopping) throw new SlotError(index, 'the cluster is shutting down')
      if (slot.candidate) {
        // Another replacement is booting (a memory ceiling): wait for it, then look again.
        await this.#whenReady(slot.candidate).catch(() => {})
        continue
      }
      const current = slot.current
      if (current && current.generation >= generation) {
        if (current.phase === 'ready') return
        await this.#whenReady(current)
        return
      }
      if (current?.phase === 'ready') return this.#surge(slot, reason)
      if (current) {
        // Still booting older code: it never served, so it goes now.
        current.planned = true
        slot.current = undefined
        this.#toRetiring(current, 'kill-now')
      }
      slot.backoff?.cancel()
      slot.backoff = undefined
      const fresh = this.#spawnCurrent(slot)
      if (!fresh) throw new SlotError(index, 'new worker could not be started')
      await this.#whenReady(fresh)
      return
    }
  }

  /**
   * Replaces the serving worker of `index` even on the current code (the memory ceiling): the
   * candidate must be ready before the old one drains. Rejects with `SlotError` when the slot serves
   * nothing, a replacement already boots, or the new worker failed (the old one keeps serving).
   */
  refresh(index: number, reason: string): Promise<void> {
    const slot = this.#slots[index]
    if (!slot) throw new RangeError(`no slot ${index}`)
    if (this.#stopping) return Promise.reject(new SlotError(index, 'the cluster is shutting down'))
    if (slot.candidate || slot.current?.phase !== 'ready')
      return Promise.reject(new SlotError(index, 'the slot has no serving worker to replace'))
    return this.#surge(slot, reason)
  }

  /**
   * A worker asks to be replaced before it drains (a SIGTERM aimed at it): a candidate boots while it
   * keeps serving and accepting, so even a single worker's port never refuses a connection; once the
   * candidate is ready the worker is asked to drain like any replaced one. Resolves then, or at once
   * when it cannot be replaced that way (the worker then drains by itself, which forks its
   * replacement at once). Never rejects.
   */
  async handover(key: number, reason: string): Promise<void> {
    const worker = this.#workers.get(key)
    if (!worker || this.#stopping || worker.role !== 'current' || worker.phase !== 'ready') return
    const slot = this.#slot(worker)
    let candidate = slot.candidate // a reload's replacement already boots: it will do
    if (!candidate) {
      candidate = this.#spawn(slot, 'candidate')
      if (!candidate) return
      candidate.drainReason = reason
    }
    await this.#whenReady(candidate).catch(() => {})
  }

  /**
   * Stops the cluster's slots: no more forks, pending restarts cancelled, workers that never served
   * killed, serving ones asked to drain. Resolves to 0 when every worker that served exited cleanly.
   */
  async shutdown(reason: string): Promise<number> {
    this.#stopping = true
    for (const slot of this.#slots) {
      slot.backoff?.cancel()
      slot.backoff = undefined
      for (const worker of [slot.candidate, slot.current]) {
        if (!worker) continue
        if (worker.phase === 'ready') this.#retire(worker, reason)
        else {
          worker.planned = true
          this.#toRetiring(worker, 'kill-now')
        }
      }
      slot.candidate = undefined
      slot.current = undefined
    }
    const live = [...this.#workers.values()]
    await Promise.all(live.map((w) => w.exited))
    // A worker killed before it ever served had nothing to drain: no unclean exit.
    return live.every((w) => w.readyAt === undefined || w.exitCode === 0) ? 0 : 1
  }

  /** SIGKILLs every live worker (the second Ctrl+C). */
  killAll(): void {
    this.#stopping = true
    for (const slot of this.#slots) {
      slot.backoff?.cancel()
      slot.backoff = undefined
    }
    for (const worker of this.#workers.values()) this.#host.kill(worker.key)
  }

  // ─── internals ──────────────────────────────────────────────────────────────

  #slot(worker: WorkerRecord): Slot {
    return this.#slots[worker.slot] as Slot
  }

  #note(note: SlotNote): void {
    this.#host.notify(note)
  }

  #view(w: WorkerRecord): WorkerView {
    const { key, pid, slot, generation, phase, role, startedAt, readyAt, address } = w
    return { key, pid, slot, generation, phase, role, startedAt, readyAt, address }
  }

  #spawnCurrent(slot: Slot): WorkerRecord | undefined {
    return this.#spawn(slot, 'current')
  }

  /** Forks into `role`; a synchronous spawn error is handled as a lost worker and returns undefined. */
  #spawn(slot: Slot, role: 'current' | 'candidate'): WorkerRecord | undefined {
    let spawned: { key: number; pid: number | undefined }
    try {
      spawned = this.#host.spawn(slot.index, this.generation)
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err)
      this.#note({ type: 'spawn-error', slot: slot.index, key: undefined, error })
      if (role === 'current') this.#lost(slot, undefined, true, `could not start a worker: ${error}`)
      return undefined
    }
    let markExited = () => {}
    const exited = new Promise<void>((resolve) => {
      markExited = resolve
    })
    const worker: WorkerRecord = {
      key: spawned.key,
      pid: spawned.pid,
      slot: slot.index,
      generation: this.generation,
      phase: 'starting',
      role,
      startedAt: this.#host.now(),
      readyAt: undefined,
      address: undefined,
      timer: undefined,
      planned: false,
      lastError: undefined,
      exitCode: undefined,
      drainReason: 'reload',
      waiters: [],
      gone: false,
      exited,
      markExited,
    }
    this.#workers.set(worker.key, worker)
    if (role === 'current') slot.current = worker
    else slot.candidate = worker
    const { readyTimeoutMs } = this.#policy
    worker.timer = this.#host.setTimer(readyTimeoutMs, () => {
      worker.timer = undefined
      if (worker.gone || worker.phase !== 'starting') return
      worker.lastError = `not ready within readyTimeoutMs (${readyTimeoutMs} ms); a worker reports ready through clusteredListen() or serve()`
      this.#note({ type: 'ready-timeout', slot: slot.index, key: worker.key, pid: worker.pid, error: worker.lastError })
      this.#host.kill(worker.key)
    })
    this.#note({ type: 'fork', slot: slot.index, key: worker.key, pid: worker.pid, generation: worker.generation })
    return worker
  }

  /**
   * Moves a worker out of its slot's ownership: from now on only its own exit concerns it. It is
   * killed now, or it drains and owns a kill timer for its deadline plus the margin.
   */
  #toRetiring(worker: WorkerRecord, deadlineMs: number | 'kill-now'): void {
    worker.timer?.cancel()
    worker.timer = undefined
    worker.role = 'retiring'
    if (deadlineMs === 'kill-now') {
      this.#host.kill(worker.key)
      return
    }
    worker.phase = 'draining'
    worker.timer = this.#host.setTimer(deadlineMs + KILL_MARGIN_MS, () => {
      worker.timer = undefined
      if (worker.gone) return
      this.#note({ type: 'kill-deadline', slot: worker.slot, key: worker.key, pid: worker.pid })
      this.#host.kill(worker.key)
    })
  }

  /** Asks a serving worker to drain; SIGKILL after its deadline and the margin. */
  #retire(worker: WorkerRecord, reason: string): void {
    if (worker.gone || worker.role === 'retiring') return
    worker.planned = true
    const { shutdownTimeoutMs } = this.#policy
    this.#toRetiring(worker, shutdownTimeoutMs)
    this.#host.drain(worker.key, reason, shutdownTimeoutMs)
  }

  /** Forks a candidate beside the serving worker; it takes the slot once ready, then the old one drains. */
  #surge(slot: Slot, reason: string): Promise<void> {
    const candidate = this.#spawn(slot, 'candidate')
    if (!candidate) return Promise.reject(new SlotError(slot.index, 'new worker could not be started'))
    candidate.drainReason = reason
    return this.#whenReady(candidate)
  }

  #whenReady(worker: WorkerRecord): Promise<void> {
    if (worker.gone)
      return Promise.reject(new SlotError(worker.slot, `new worker is gone${worker.lastError ? `: ${firstLine(worker.lastError)}` : ''}`))
    return new Promise<void>((resolve, reject) => {
      worker.waiters.push({ resolve, reject })
    })
  }

  #reject(worker: WorkerRecord, reason: string): void {
    for (const w of worker.waiters.splice(0)) w.reject(new SlotError(worker.slot, reason))
  }

  /** `what` completes "new worker …" for a waiting replacement, e.g. "exited with code 1: boom". */
  #gone(worker: WorkerRecord, what: string): void {
    worker.gone = true
    worker.timer?.cancel()
    worker.timer = undefined
    this.#workers.delete(worker.key)
    this.#reject(worker, `new worker ${what}`)
    worker.markExited()
  }

  #afterGone(worker: WorkerRecord, how: string): void {
    const slot = this.#slot(worker)
    if (slot.candidate === worker) {
      // A failed replacement: the current worker keeps serving; no crash counted.
      slot.candidate = undefined
      return
    }
    if (slot.current !== worker) return // retiring, or already replaced
    slot.current = undefined
    const wasReady = worker.readyAt !== undefined
    const reason = worker.lastError ? firstLine(worker.lastError) : `exited with ${how}${wasReady ? '' : ' before it was ready'}`
    this.#lost(slot, worker, !worker.planned, reason)
  }

  /**
   * The slot's current worker is gone or going. A crash is counted (backoff, breaker); then the
   * candidate takes over, or a new worker is forked now or after the backoff delay.
   */
  #lost(slot: Slot, worker: WorkerRecord | undefined, crash: boolean, reason: string): void {
    if (this.#stopping) return
    let delayMs = 0
    if (crash) {
      const now = this.#host.now()
      const wasReady = worker?.readyAt !== undefined
      if (worker?.readyAt !== undefined && now - worker.readyAt >= this.#policy.restartBackoff.healthyAfterMs) slot.consecutiveCrashes = 0
      slot.consecutiveCrashes++
      slot.restarts++
      if (worker) this.#note({ type: 'crash', slot: slot.index, key: worker.key, pid: worker.pid, ready: wasReady, reason })
      if (this.#crashes.record(now, crashWeight(wasReady))) {
        this.#tripBreaker(reason)
        return
      }
      delayMs = restartDelayMs(slot.consecutiveCrashes, this.#policy.restartBackoff)
      this.#note({ type: 'restart-scheduled', slot: slot.index, delayMs, consecutiveCrashes: slot.consecutiveCrashes })
    }
    if (slot.candidate) {
      // A replacement is already booting: it takes the slot.
      const candidate = slot.candidate
      slot.candidate = undefined
      slot.current = candidate
      candidate.role = 'current'
      return
    }
    if (delayMs === 0) {
      this.#spawnCurrent(slot)
      return
    }
    slot.backoff = this.#host.setTimer(delayMs, () => {
      slot.backoff = undefined
      if (!this.#stopping && !slot.current) this.#spawnCurrent(slot)
    })
  }

  #tripBreaker(lastError: string): void {
    const { maxCrashes, windowMs } = this.#policy.crashLoop
    this.#stopping = true
    for (const slot of this.#slots) {
      slot.backoff?.cancel()
      slot.backoff = undefined
    }
    this.#note({ type: 'crash-loop', crashWeight: this.#crashes.weight(), maxCrashes, windowMs, lastError })
  }
}

export function firstLine(text: string): string {
  return text.split('\n').slice(0, 2).join(' | ').slice(0, 500)
}
