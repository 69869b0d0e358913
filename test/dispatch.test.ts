// One command dispatcher for worker → primary requests: in-process (workers: 0) answers exactly as
// the cluster does, command by command; handlers are looked up among own keys only.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

const unknown = (cmd: string) => ({
  ok: false,
  code: 'SHOAL_ERR_UNKNOWN_COMMAND',
  message: `no handler for command "${cmd}" (add it to the \`handlers\` option)`,
})
const unsendable = (cmd: string, problem: string) => ({
  ok: false,
  code: 'SHOAL_ERR_NOT_SERIALIZABLE',
  message: `handler for "${cmd}" returned a value that cannot be sent: ${problem}`,
})

/** What every mode must answer to `/ask?cmd=…`, byte for byte. */
const expected: [string, Record<string, unknown>][] = [
  ['fail', { ok: false, code: 'SHOAL_ERR_HANDLER_FAILED', message: 'handler for "fail" failed: handler exploded' }],
  ['bad', unsendable('bad', '`.f` is a function')],
  ['fn', unsendable('fn', 'the value is a function')],
  ['date', unsendable('date', 'the value is a Date, not a plain object or array; send date.toISOString() or getTime()')],
  ['bigint', unsendable('bigint', 'the value is a BigInt (convert it to a number or string)')],
  ['map', unsendable('map', 'the value is a Map, not a plain object or array')],
  ['nope', unknown('nope')],
  ['constructor', unknown('constructor')],
  ['toString', unknown('toString')],
  ['hasOwnProperty', unknown('hasOwnProperty')],
  ['__proto__', unknown('__proto__')],
]

async function start(workers: string) {
  const f = new Fixture('express-app.mjs', { WORKERS: workers })
  const started = await f.event('started')
  const address = (started.status as { workers: { address: string }[] }).workers[0]?.address ?? ''
  const ask = async (query: string) => (await get(`${address}/ask?${query}`)).json<Record<string, unknown>>()
  return { f, ask }
}

describe.each([
  ['in-process (workers: 0)', '0'],
  ['cluster (workers: 2)', '2'],
])('requests %s', (_mode, workers) => {
  it('answer with the same codes and messages: own handlers only, results that cannot cross IPC refused', async () => {
    const { f, ask } = await start(workers)
    expect(await ask('cmd=echo&payload={"a":[1,"x"]}')).toMatchObject({ ok: true, value: { payload: { a: [1, 'x'] } } })
    const answers: [string, unknown][] = []
    for (const [cmd] of expected) answers.push([cmd, await ask(`cmd=${encodeURIComponent(cmd)}`)])
    expect(Object.fromEntries(answers)).toEqual(Object.fromEntries(expected))
    // Refused results are logged where the handler ran, naming the command.
    expect(f.stderr).toMatch(/handler for "date" returned a value that cannot be sent/)
  })
})
