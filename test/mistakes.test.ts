// The mistakes a newcomer makes in the first hour, each with the one clear message it must get.
import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Fixture, isAlive } from './helpers/fixture.js'

const blockers: net.Server[] = []
afterEach(() => {
  for (const s of blockers.splice(0)) s.close()
})

async function takenPort(): Promise<number> {
  const server = net.createServer()
  blockers.push(server)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

/** True while any process of the fixture's process group (the primary and its workers) is alive. */
function groupAlive(pgid: number): boolean {
  return isAlive(-pgid)
}

describe('port already in use, clustered', () => {
  it('rejects at once with SHOAL_ERR_LISTEN naming the port, after the cluster is down, and exits non-zero', async () => {
    const port = await takenPort()
    const f = new Fixture('mistakes.mjs', { MISTAKE: 'port-in-use', PORT: String(port), WORKERS: '2' })
    const rejected = await f.event('rejected', undefined, 1, 30_000)
    expect(rejected).toMatchObject({ code: 'SHOAL_ERR_LISTEN', message: `port ${port} is already in use (127.0.0.1:${port})` })
    // One worker's boot, not a crash loop's worth (~3.4 s before); generous for a loaded 2-core machine.
    expect(rejected.ms).toBeLessThan(2500)
    expect(rejected.workersLeft).toBe(0) // rejected after the cluster it began is down
    expect(groupAlive(f.pid)).toBe(true) // the primary is still here to print the rejection...
    const exit = await f.waitForExit(10_000)
    expect(exit.code).toBe(1)
    expect(groupAlive(f.pid)).toBe(false) // ...and no worker outlives it
    expect(f.stderr).not.toMatch(/crash loop/)
    // One line from shoal says why; no worker prints its own stack.
    expect(f.stderr.match(/already in use/g)?.length).toBe(2) // shoal's line + Node's print of the uncaught rejection
    expect(f.stderr).not.toMatch(/could not listen/)
  })
})
