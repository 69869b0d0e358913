/**
 * Primary → worker requests (`job.inWorker(cmd, payload)`): sent to one live worker, round-robin;
 * if that worker dies before it answers, the same request goes to another live one (waiting for one
 * to be ready if none is), until the deadline. A retried run may have partly run in the dead worker:
 * work handed to workers is at-least-once.
 */
import type { CommandAnswer } from './dispatch.js'
import { codes, ShoalError, type ShoalErrorCode } from './errors.js'
import type { PrimaryMessage } from './protocol.js'
import { type Clock, realClock } from './schedule.js'
import { encodeJson } from './serialize.js'

export interface AskHost {
  /** Workers that may take work now (current and ready). */
  live(): number[]
  /** False when the message could not be handed to that worker's channel. */
  send(key: number, message: PrimaryMessage): boolean
  clock?: Clock
}

export interface AskOptions {
  /** @default 30_000 */
  timeoutMs?: number
  signal?: AbortSignal
}

interface Pending {
  id: number
  cmd: string
  payload: unknown
  /** The worker it was sent to; undefined while it waits for a live worker. */
  key: number | undefined
  /** Asked of this one worker (`askWorker`): never sent to another one. */
  only: boolean
  attempts: number
  resolve(value: unknown): void
  reject(error: Error): void
}

export class WorkerAsks {
  readonly #host: AskHost
  readonly #clock: Clock
  readonly #pending = new Map<number, Pending>()
  #nextId = 1
  #turn = 0

  constructor(host: AskHost) {
    this.#host = host
    this.#clock = host.clock ?? realClock
  }

  ask(cmd: string, payload: unknown, { timeoutMs = 30_000, signal }: AskOptions = {}): Promise<unknown> {
    const encoded = payload === undefined ? undefined : encodeJson(payload)
    if (encoded && !encoded.ok) {
      return Promise.reject(new ShoalError(codes.SHOAL_ERR_NOT_SERIALIZABLE, `payload for "${cmd}" cannot be sent: ${encoded.problem}`))
    }
    return new Promise((resolve, reject) => {
      const id = this.#nextId++
      const done = () => {
        this.#pending.delete(id)
        timer.cancel()
        signal?.removeEventListener('abort', onAbort)
      }
      const fail = (code: ShoalErrorCode, message: string) => {
        done()
        reject(new ShoalError(code, message))
      }
      const onAbort = () => fail(codes.SHOAL_ERR_REQUEST_TIMEOUT, `"${cmd}" was abandoned: ${String(signal?.reason)}`)
      const timer = this.#clock.setTimer(timeoutMs, () => {
        const entry = this.#pending.get(id)
        const where = entry?.key === undefined ? 'no worker was ready to take it' : 'no worker answered'
        fail(codes.SHOAL_ERR_REQUEST_TIMEOUT, `"${cmd}" in a worker timed out after ${timeoutMs} ms: ${where}`)
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      const entry: Pending = {
        id,
        cmd,
        payload: encoded && JSON.parse(encoded.json),
        key: undefined,
        only: false,
        attempts: 0,
        resolve: (value) => {
          done()
          resolve(value)
        },
        reject: (error) => {
          done()
          reject(error)
        },
      }
      this.#pending.set(id, entry)
      if (signal?.aborted) onAbort()
      else this.#dispatch(entry)
    })
  }

  /**
   * Asks one worker, with no retry elsewhere: rejects with `SHOAL_ERR_REQUEST_TIMEOUT` after
   * `timeoutMs`, `SHOAL_ERR_CHANNEL_CLOSED` if it cannot be sent or the worker exits first. A late
   * answer is ignored. Shares ids with `ask`, so answers never cross.
   */
  askWorker(key: number, cmd: string, timeoutMs: number): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++
      const timer = this.#clock.setTimer(timeoutMs, () => {
        this.#pending.delete(id)
        reject(new ShoalError(codes.SHOAL_ERR_REQUEST_TIMEOUT, `worker ${key} did not answer "${cmd}" within ${timeoutMs} ms`))
      })
      const settle = (fn: () => void) => {
        this.#pending.delete(id)
        timer.cancel()
        fn()
      }
      const entry: Pending = {
        id,
        cmd,
        payload: undefined,
        key,
        only: true,
        attempts: 1,
        resolve: (value) => settle(() => resolve(value)),
        reject: (error) => settle(() => reject(error)),
      }
      this.#pending.set(id, entry)
      if (!this.#host.send(key, { shoal: 1, type: 'ask', id, cmd, payload: undefined })) {
        entry.reject(new ShoalError(codes.SHOAL_ERR_CHANNEL_CLOSED, `worker ${key} cannot be asked "${cmd}": its channel is closed`))
      }
    })
  }

  /** A worker's `answer`; ignored unless that worker holds that request. */
  answered(key: number, id: number, answer: CommandAnswer): void {
    const entry = this.#pending.get(id)
    if (!entry || entry.key !== key) return
    if (answer.ok) entry.resolve(answer.value)
    else entry.reject(new ShoalError(answer.error.code as ShoalErrorCode, answer.error.message))
  }

  /** A worker is gone (exited): what it held goes to another live worker. */
  gone(key: number): void {
    for (const entry of this.#pending.values()) {
      if (entry.key !== key) continue
      if (entry.only) {
        entry.reject(new ShoalError(codes.SHOAL_ERR_CHANNEL_CLOSED, `worker ${key} exited before it answered "${entry.cmd}"`))
        continue
      }
      entry.key = undefined
      this.#dispatch(entry, key)
    }
  }

  /** A worker became ready: requests waiting for one are sent now. */
  changed(): void {
    for (const entry of this.#pending.values()) if (entry.key === undefined) this.#dispatch(entry)
  }

  /** The cluster stops: nothing waiting will be answered. */
  stop(): void {
    for (const entry of this.#pending.values()) {
      entry.reject(new ShoalError(codes.SHOAL_ERR_SHUTTING_DOWN, `"${entry.cmd}" in a worker was abandoned: the cluster is shutting down`))
    }
  }

  /** Requests still waiting for an answer. */
  get size(): number {
    return this.#pending.size
  }

  #dispatch(entry: Pending, avoid?: number): void {
    const live = this.#host.live().filter((key) => key !== avoid)
    for (let i = 0; i < live.length; i++) {
      const key = live[this.#turn++ % live.length] as number
      entry.key = key
      if (this.#host.send(key, { shoal: 1, type: 'ask', id: entry.id, cmd: entry.cmd, payload: entry.payload })) {
        entry.attempts++
        return
      }
    }
    entry.key = undefined // parked: `changed()` sends it when a worker is ready
  }
}
