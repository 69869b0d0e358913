import { describe, expect, expectTypeOf, it } from 'vitest'
import { answerCommand, type CommandAnswer, findHandler } from './dispatch.js'
import type { Logger } from './logger.js'
import type { PrimaryMessage } from './protocol.js'

const worker = { slot: 1, workerId: 2, pid: 3 }

function recorder() {
  const errors: string[] = []
  const log: Logger = {
    info: () => {},
    warn: () => {},
    debug: () => {},
    error: (a: object | string, b?: string) => errors.push(String(b ?? a)),
  }
  return { log, errors }
}

describe('findHandler', () => {
  it('takes own keys only: Object.prototype names no command', () => {
    const echo = () => 1
    const handlers = { echo }
    for (const cmd of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', '__defineGetter__']) {
      expect(findHandler(handlers, {}, cmd)).toBeUndefined()
    }
    expect(findHandler(handlers, {}, 'echo')).toBe(echo)
  })

  it('prefers the app’s handler, then the builtin', () => {
    const app = () => 'app'
    const builtin = () => 'builtin'
    expect(findHandler({ 'shoal:sync': app }, { 'shoal:sync': builtin }, 'shoal:sync')).toBe(app)
    expect(findHandler({}, { 'shoal:sync': builtin }, 'shoal:sync')).toBe(builtin)
    expect(findHandler(Object.create({ inherited: app }), {}, 'inherited')).toBeUndefined()
  })
})

describe('answerCommand', () => {
  const handlers = {
    echo: (payload: unknown, who: unknown) => ({ payload, who }),
    nothing: () => undefined,
    fail: () => {
      throw new Error('handler exploded')
    },
    rejects: () => Promise.reject('just a string'),
    date: () => new Date(0),
    bigint: () => 10n,
    map: () => new Map(),
    fn: () => () => 1,
    nested: () => ({ f: () => 1 }),
    getter: () => ({
      get x() {
        throw new Error('getter exploded')
      },
    }),
    weird: () => {
      throw {
        toString() {
          throw new Error('no')
        },
      }
    },
  }

  it('answers with the result as it arrives over IPC: a JSON copy', async () => {
    const { log } = recorder()
    const result = { a: [1] }
    const answer = await answerCommand({ same: () => result }, {}, 'same', null, worker, log)
    expect(answer).toEqual({ ok: true, value: { a: [1] } })
    expect((answer as { value: unknown }).value).not.toBe(result)
    expect(await answerCommand(handlers, {}, 'echo', { p: 1 }, worker, log)).toEqual({
      ok: true,
      value: { payload: { p: 1 }, who: worker },
    })
    expect(await answerCommand(handlers, {}, 'nothing', null, worker, log)).toEqual({ ok: true, value: undefined })
  })

  it.each([
    ['constructor', 'SHOAL_ERR_UNKNOWN_COMMAND', 'no handler for command "constructor" (add it to the `handlers` option)'],
    ['toString', 'SHOAL_ERR_UNKNOWN_COMMAND', 'no handler for command "toString" (add it to the `handlers` option)'],
    ['fail', 'SHOAL_ERR_HANDLER_FAILED', 'handler for "fail" failed: handler exploded'],
    ['rejects', 'SHOAL_ERR_HANDLER_FAILED', 'handler for "rejects" failed: just a string'],
    ['weird', 'SHOAL_ERR_HANDLER_FAILED', 'handler for "weird" failed: {}'],
    ['date', 'SHOAL_ERR_NOT_SERIALIZABLE', 'handler for "date" returned a value that cannot be sent: the value is a Date'],
    ['bigint', 'SHOAL_ERR_NOT_SERIALIZABLE', 'the value is a BigInt'],
    ['map', 'SHOAL_ERR_NOT_SERIALIZABLE', 'the value is a Map'],
    ['fn', 'SHOAL_ERR_NOT_SERIALIZABLE', 'the value is a function'],
    ['nested', 'SHOAL_ERR_NOT_SERIALIZABLE', '`.f` is a function'],
    ['getter', 'SHOAL_ERR_NOT_SERIALIZABLE', '`.x` threw while it was read: getter exploded'],
  ])('%s → %s, never a rejection', async (cmd, code, message) => {
    const { log, errors } = recorder()
    const answer = await answerCommand(handlers, {}, cmd, null, worker, log)
    expect(answer).toMatchObject({ ok: false, error: { code, message: expect.stringContaining(message) } })
    // A result that cannot be sent is the handler's bug: logged where it ran.
    expect(errors.length).toBe(code === 'SHOAL_ERR_NOT_SERIALIZABLE' ? 1 : 0)
  })

  it('is the body of a response message', () => {
    expectTypeOf<{ shoal: 1; type: 'response'; id: number } & CommandAnswer>().toExtend<PrimaryMessage>()
  })
})
