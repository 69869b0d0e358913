// A shared value whose result throws while it is inspected (a getter that throws) is a bad value like
// any other: logged, the last good value kept, the source recomputed on schedule, the primary up.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

describe('a shared value that throws while inspected', () => {
  it('is logged, the last good value kept, and the source keeps its schedule', async () => {
    const f = new Fixture('shared-getter.mjs', { WORKERS: '1' })
    const started = await f.event('started')
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address ?? ''
    type Info = { shared: { usersCount?: unknown }; info: { version: number } | null }
    const read = async () => (await get(`${address}/info?name=usersCount`)).json<Info>()
    // calls: 1 → 100, 2..3 → a value whose getter throws, 4.. → 200
    await f.waitForOutput(/getter exploded/)
    expect(f.stderr).toMatch(/usersCount.*threw while it was read: getter exploded|shared value rejected, last good value kept.*usersCount/)
    const deadline = Date.now() + 15_000
    let now = await read()
    while (now.shared.usersCount !== 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      now = await read()
    }
    // Recomputed after the bad values, and nothing was published in between: 100 was version 1.
    expect(now).toMatchObject({ shared: { usersCount: 200 }, info: { version: 2 } })
    expect(f.count('exit')).toBe(0)
  })
})
