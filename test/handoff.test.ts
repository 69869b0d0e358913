// A worker must not exit while the primary may still be handing it a connection (nodejs/node#21746):
// a connection sent to a worker that already exited is never answered, and its client hangs forever.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

describe('rolling reloads under connection-per-request clients (regression: a request could hang forever)', () => {
  it('every request is answered: zero hung or failed requests through repeated reloads', async () => {
    // Four workers replaced two at a time: many drains in a bounded time. No onShutdown hook, so an old
    // worker with nothing in flight used to exit in the very tick it stopped listening.
    const f = new Fixture('core-primary.mjs', { WORKERS: '4', FIXTURE_OPTS: JSON.stringify({ logger: 'silent', reloadConcurrency: 2 }) })
    const status = (await f.event('started')).status as { workers: { address: string }[] }
    const address = status.workers[0]?.address ?? ''
    let stopped = false
    let sent = 0
    const errors: string[] = []
    // Each request on a fresh connection, so the primary hands every one of them to some worker.
    const client = async () => {
      while (!stopped) {
        sent++
        try {
          const reply = await get(`${address}/`, false, 3000)
          if (reply.status !== 200) errors.push(`status ${reply.status}`)
        } catch (err) {
          errors.push((err as NodeJS.ErrnoException).code ?? (err as Error).message)
        }
      }
    }
    const clients = Array.from({ length: 3 }, client)
    const started = Date.now()
    let reloads = 0
    while (Date.now() - started < 14_000) {
      expect(await f.call('reload')).toMatchObject({ ok: true })
      reloads++
    }
    stopped = true
    await Promise.all(clients)
    expect({ reloads: reloads >= 3, errors }).toEqual({ reloads: true, errors: [] })
    expect(sent).toBeGreaterThan(300)
  })
})
