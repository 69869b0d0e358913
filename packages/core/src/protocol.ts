/**
 * Every IPC message shoal sends, declared once. Messages carry `shoal: 1` so the app's own
 * `process.send` traffic passes through untouched, and everything a worker sends is validated
 * before the primary acts on it: a misbehaving worker must never take the primary down.
 */

export interface SharedEntry {
  value: unknown
  version: number
  updatedAt: number
}

export interface WireError {
  code: string
  message: string
}

/** Primary → worker. */
export type PrimaryMessage =
  | { shoal: 1; type: 'shared-snapshot'; entries: Record<string, SharedEntry> }
  | { shoal: 1; type: 'shared-update'; name: string; entry: SharedEntry }
  /** `restart`: the worker is replaced while the cluster keeps running (a reload), not stopped with it. */
  | { shoal: 1; type: 'shutdown'; reason: string; shutdownTimeoutMs: number; restart: boolean }
  | { shoal: 1; type: 'response'; id: number; ok: true; value: unknown }
  | { shoal: 1; type: 'response'; id: number; ok: false; error: WireError }
  | { shoal: 1; type: 'ping'; seq: number }
  | { shoal: 1; type: 'not-ready' }
  /** A job hands its work to this worker: answered by the `handleInWorker(cmd, ...)` handler with an `answer`. */
  | { shoal: 1; type: 'ask'; id: number; cmd: string; payload: unknown }

/**
 * Worker → primary. `draining` is sent once, when the worker starts to drain for any reason (the
 * primary asked, a SIGTERM aimed at it, an uncaught exception when `fatal`); `deadlineMs` is how long
 * its drain may take, so the primary can SIGKILL it after that plus a margin.
 */
export type WorkerMessage =
  | { shoal: 1; type: 'hello' }
  | { shoal: 1; type: 'ready'; address: string }
  | { shoal: 1; type: 'draining'; deadlineMs: number; fatal: boolean }
  | { shoal: 1; type: 'request'; id: number; cmd: string; payload: unknown }
  /** `upgraded`: open upgraded connections (WebSocket). */
  | { shoal: 1; type: 'pong'; seq: number; rssBytes: number; loopDelayMs: number; upgraded: number }
  | { shoal: 1; type: 'fatal'; message: string }
  | { shoal: 1; type: 'answer'; id: number; ok: true; value: unknown }
  | { shoal: 1; type: 'answer'; id: number; ok: false; error: WireError }
  /** The server could not listen (EADDRINUSE, EACCES): no respawn can fix it, so the primary gives up at once. */
  | { shoal: 1; type: 'listen-failed'; code: string; message: string }

export type PrimaryMessageType = PrimaryMessage['type']
export type WorkerMessageType = WorkerMessage['type']

const MAX_STRING = 64 * 1024

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isShortString(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_STRING
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

/** True for anything shoal sent, whether or not it is well formed. */
export function isShoalMessage(message: unknown): message is { shoal: 1; type: unknown } {
  return isRecord(message) && message.shoal === 1
}

/** Validates a message from a worker; returns null for anything malformed. */
export function parseWorkerMessage(message: unknown): WorkerMessage | null {
  if (!isShoalMessage(message)) return null
  const m = message as Record<string, unknown>
  switch (m.type) {
    case 'hello':
      return { shoal: 1, type: 'hello' }
    case 'draining':
      return isCount(m.deadlineMs) && typeof m.fatal === 'boolean'
        ? { shoal: 1, type: 'draining', deadlineMs: m.deadlineMs, fatal: m.fatal }
        : null
    case 'ready':
      return isShortString(m.address) ? { shoal: 1, type: 'ready', address: m.address } : null
    case 'request':
      return isCount(m.id) && isShortString(m.cmd) ? { shoal: 1, type: 'request', id: m.id, cmd: m.cmd, payload: m.payload } : null
    case 'pong': {
      const { seq, rssBytes, loopDelayMs, upgraded } = m
      return isCount(seq) && typeof rssBytes === 'number' && typeof loopDelayMs === 'number' && isCount(upgraded)
        ? { shoal: 1, type: 'pong', seq, rssBytes, loopDelayMs, upgraded }
        : null
    }
    case 'fatal':
      return typeof m.message === 'string' ? { shoal: 1, type: 'fatal', message: m.message.slice(0, 4000) } : null
    case 'answer': {
      if (!isCount(m.id)) return null
      if (m.ok === true) return { shoal: 1, type: 'answer', id: m.id, ok: true, value: m.value }
      const error = m.error
      return m.ok === false && isRecord(error) && isShortString(error.code) && typeof error.message === 'string'
        ? { shoal: 1, type: 'answer', id: m.id, ok: false, error: { code: error.code, message: error.message.slice(0, 4000) } }
        : null
    }
    case 'listen-failed':
      return isShortString(m.code) && isShortString(m.message)
        ? { shoal: 1, type: 'listen-failed', code: m.code, message: m.message }
        : null
    default:
      return null
  }
}

/** Validates a message from the primary; returns null for anything that is not shoal's. */
export function parsePrimaryMessage(message: unknown): PrimaryMessage | null {
  if (!isShoalMessage(message)) return null
  const m = message as Record<string, unknown>
  switch (m.type) {
    case 'shared-snapshot':
    case 'shared-update':
    case 'shutdown':
    case 'response':
    case 'ping':
    case 'not-ready':
    case 'ask':
      return m as unknown as PrimaryMessage
    default:
      return null
  }
}
