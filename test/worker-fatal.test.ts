// An uncaught exception in one request must not drop the others: the worker (or single process) logs
// it, stops accepting, lets its in-flight requests finish, and exits 1.
import { describe, expect, it } from 'vitest'
import { Fixture, sleep } from './helpers/fixture.js'
import { get, type Reply } from './helpers/http.js'

type Status = { workers: { pid: number; slot: number; address: string }[] }

async function start(env: Record<string, string>, opts: Record<string, unknown> = {}) {
  const f = new Fixture('http-app.mjs', { FIXTURE_OPTS: JSON.stringify({ logger: 'text', ...opts }), ...env })
  const status = (await f.event('started')).status as Status
  const first = status.workers[0] as { pid: number; address: string }
  return { f, address: first.address, pid: first.pid }
}

/** Three slow requests in flight on one process, then `/throw...` on a fourth connection. */
async function slowRequestsThenThrow(address: string, throwPath: string) {
  const slow = Array.from({ length: 3 }, () => get(`${address}/slow?ms=1500`).catch((err: NodeJS.ErrnoException) => err))
  await sleep(300) // the three are in the worker's hands
  await get(`${address}${throwPath}`)
  return Promise.all(slow)
}

describe('an uncaught exception in a request (regression: every in-flight request of that worker was reset)', () => {
  it('supervised worker: the other in-flight requests finish with Connection: close, the worker exits 1 and is replaced', async () => {
    const { f, address, pid } = await start({ WORKERS: '1' })
    const replies = await slowRequestsThenThrow(address, '/throw?times=2&gapMs=300')
    for (const r of replies) expect(r).toMatchObject({ status: 200, headers: { connection: 'close' } })
    const exit = await f.event('exit', (e) => e.pid === pid)
    expect(exit.code).toBe(1)
    // Logged through shoal's logger with its stack; the second throw (while draining) is only logged.
    expect(f.stderr).toMatch(/ERROR uncaught exception.*pid=\d+.*slot=0.*boom in a request #1.*\\n\s+at /)
    expect(f.stderr).toMatch(/ERROR uncaught exception while draining.*boom in a request #2/)
    const fresh = await f.event('ready', (e) => e.pid !== pid)
    // Its only worker gone, the primary let go of port 0: the replacement listens on a new one.
    expect((await get(`${fresh.address}/`)).json()).toMatchObject({ pid: fresh.pid })
    await sleep(500)
    expect(f.count('fork')).toBe(1) // one replacement (forks before 'started' are not reported by this fixture)
  })

  it('unhandled rejection in a supervised worker: the same drain', async () => {
    const { f, address, pid } = await start({ WORKERS: '1' })
    const replies = await slowRequestsThenThrow(address, '/throw?reject=1')
    for (const r of replies) expect(r).toMatchObject({ status: 200 })
    expect((await f.event('exit', (e) => e.pid === pid)).code).toBe(1)
    expect(f.stderr).toMatch(/ERROR unhandled rejection.*boom in a request #1/)
  })

  it('single process (workers: 0): in-flight requests finish, then it exits 1', async () => {
    const { f, address } = await start({ WORKERS: '0' })
    const replies = await slowRequestsThenThrow(address, '/throw')
    for (const r of replies) expect(r).toMatchObject({ status: 200, headers: { connection: 'close' } })
    expect((await f.waitForExit()).code).toBe(1)
    expect(f.stderr).toMatch(/ERROR uncaught exception.*boom in a request #1/)
    expect(f.count('cleanup')).toBe(1) // onShutdown ran
  })

  it('drainOnUncaught: false leaves the process to Node (or the app’s own handler): it dies at once', async () => {
    const { f, address } = await start({ WORKERS: '0' }, { drainOnUncaught: false })
    const replies = await slowRequestsThenThrow(address, '/throw')
    for (const r of replies) expect((r as Reply).status).toBeUndefined() // reset: nobody drained
    expect((await f.waitForExit()).code).toBe(1)
    expect(f.stderr).toContain('boom in a request #1')
    expect(f.count('cleanup')).toBe(0)
  })
})
