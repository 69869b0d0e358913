/**
 * The one command dispatcher behind `request.cluster.request(cmd, payload)`: the primary answers a
 * worker with it, and in-process mode (`workers: 0`) answers locally with it, so code that passes its
 * tests in one process fails in production the same way, with the same codes and messages.
 */
import { codes, errorMessage, ShoalError } from './errors.js'
import type { Logger } from './logger.js'
import type { RequestHandler, WorkerInfo } from './options.js'
import type { WireError } from './protocol.js'
import { encodeJson } from './serialize.js'

/** A `response` message without its envelope: what the asking worker's promise settles with. */
export type CommandAnswer = { ok: true; value: unknown } | { ok: false; error: WireError }

export type Handlers = Readonly<Record<string, RequestHandler>>

export function unknownCommand(cmd: string): ShoalError {
  return new ShoalError(codes.SHOAL_ERR_UNKNOWN_COMMAND, `no handler for command "${cmd}" (add it to the \`handlers\` option)`)
}

/**
 * The app's handler for `cmd`, else shoal's builtin. Own keys only: a command named `constructor`
 * or `toString` is unknown, not whatever `Object.prototype` holds.
 */
export function findHandler(handlers: Handlers, builtins: Handlers, cmd: string): RequestHandler | undefined {
  for (const table of [handlers, builtins]) {
    const handler = Object.hasOwn(table, cmd) ? table[cmd] : undefined
    if (typeof handler === 'function') return handler
  }
  return undefined
}

function failure(code: keyof typeof codes, message: string): CommandAnswer {
  return { ok: false, error: { code, message } }
}

/**
 * Runs the handler for `cmd` and says what to answer. Never rejects: an unknown command is
 * `SHOAL_ERR_UNKNOWN_COMMAND`, a handler that throws or rejects `SHOAL_ERR_HANDLER_FAILED`, a result
 * that cannot cross IPC unchanged `SHOAL_ERR_NOT_SERIALIZABLE` (logged, naming the command). An
 * accepted value is returned as it arrives on the other side of IPC: a JSON copy.
 * @example
 * const answer = await answerCommand(opts.handlers, builtins, cmd, payload, { slot, workerId, pid }, log)
 * worker.send({ shoal: 1, type: 'response', id, ...answer })
 */
export async function answerCommand(
  handlers: Handlers,
  builtins: Handlers,
  cmd: string,
  payload: unknown,
  worker: WorkerInfo,
  log: Logger,
): Promise<CommandAnswer> {
  const handler = findHandler(handlers, builtins, cmd)
  if (!handler) return failure(codes.SHOAL_ERR_UNKNOWN_COMMAND, unknownCommand(cmd).message)
  let value: unknown
  try {
    value = await handler(payload, worker)
  } catch (err) {
    return failure(codes.SHOAL_ERR_HANDLER_FAILED, `handler for "${cmd}" failed: ${errorMessage(err)}`)
  }
  if (value === undefined) return { ok: true, value }
  const encoded = encodeJson(value)
  if (!encoded.ok) {
    const message = `handler for "${cmd}" returned a value that cannot be sent: ${encoded.problem}`
    try {
      log.error({ cmd, slot: worker.slot, pid: worker.pid }, message)
    } catch {
      // the app's logger failing must not lose the answer
    }
    return failure(codes.SHOAL_ERR_NOT_SERIALIZABLE, message)
  }
  return { ok: true, value: JSON.parse(encoded.json) }
}
