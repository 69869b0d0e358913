/** Stable error codes. Match on `err.code`, never on the message. */
export const codes = {
  /** An option passed to shoal is missing, of the wrong type or out of range. */
  SHOAL_ERR_INVALID_OPTION: 'SHOAL_ERR_INVALID_OPTION',
  /** A rolling reload stopped: a replacement crashed or was not ready in time. Old workers keep serving. */
  SHOAL_ERR_RELOAD_FAILED: 'SHOAL_ERR_RELOAD_FAILED',
  /** The cluster is shutting down, so the action was not started. */
  SHOAL_ERR_SHUTTING_DOWN: 'SHOAL_ERR_SHUTTING_DOWN',
  /** A worker → primary request got no answer in time. */
  SHOAL_ERR_REQUEST_TIMEOUT: 'SHOAL_ERR_REQUEST_TIMEOUT',
  /** A worker → primary request named a command no handler answers. */
  SHOAL_ERR_UNKNOWN_COMMAND: 'SHOAL_ERR_UNKNOWN_COMMAND',
  /** The primary's handler for a worker request threw or rejected. */
  SHOAL_ERR_HANDLER_FAILED: 'SHOAL_ERR_HANDLER_FAILED',
  /** A value cannot cross IPC (function, symbol, BigInt, NaN, circular, class instance, ...). */
  SHOAL_ERR_NOT_SERIALIZABLE: 'SHOAL_ERR_NOT_SERIALIZABLE',
  /** A shared value's compute threw or missed its deadline. The last good value is kept. */
  SHOAL_ERR_COMPUTE_FAILED: 'SHOAL_ERR_COMPUTE_FAILED',
  /** The server could not listen (EADDRINUSE, EACCES, ...). */
  SHOAL_ERR_LISTEN: 'SHOAL_ERR_LISTEN',
  /** A shared value name was used that no source declares. */
  SHOAL_ERR_UNKNOWN_SHARED: 'SHOAL_ERR_UNKNOWN_SHARED',
  /**
   * A worker → primary request cannot be answered: this worker's IPC channel to the primary is closed
   * (`cluster.worker.disconnect()`, or the primary is gone). Made then, it fails at once; pending, it
   * fails the moment the channel closes, never after its full timeout.
   */
  SHOAL_ERR_CHANNEL_CLOSED: 'SHOAL_ERR_CHANNEL_CLOSED',
  /** A job's run threw or missed its `timeoutMs`. Logged with the job's name; the next tick still runs. */
  SHOAL_ERR_JOB_FAILED: 'SHOAL_ERR_JOB_FAILED',
  /** The `onPrimary` hook threw or rejected: the primary did not start and forked nothing. */
  SHOAL_ERR_ON_PRIMARY_FAILED: 'SHOAL_ERR_ON_PRIMARY_FAILED',
  /** `clusteredListen` / `runCluster` was called a second time in one process; the message names the first call. */
  SHOAL_ERR_ALREADY_STARTED: 'SHOAL_ERR_ALREADY_STARTED',
} as const

export type ShoalErrorCode = keyof typeof codes

export class ShoalError extends Error {
  override readonly name = 'ShoalError'
  readonly code: ShoalErrorCode

  constructor(code: ShoalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }
}

/** The message of whatever was thrown, as text. Never throws, whatever user code threw. */
export function errorMessage(err: unknown): string {
  try {
    return err instanceof Error ? String(err.message) : String(err)
  } catch {
    return describe(err)
  }
}

/** Renders a received value for an error message: short, unambiguous, never throws. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return `[Function ${value.name || 'anonymous'}]`
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol' || value === undefined || typeof value === 'number') return String(value)
  try {
    if (value instanceof URL) return `URL(${value.href})`
    const json = JSON.stringify(value)
    return json.length > 80 ? `${json.slice(0, 77)}...` : json
  } catch {
    try {
      return Object.prototype.toString.call(value)
    } catch {
      return '[unreadable]'
    }
  }
}

/** "Expected `workers` to be a positive integer or 'auto', got `-1`" */
export function invalidOption(name: string, expected: string, got: unknown): ShoalError {
  return new ShoalError(codes.SHOAL_ERR_INVALID_OPTION, `Expected \`${name}\` to be ${expected}, got \`${describe(got)}\``)
}
