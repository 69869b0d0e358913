// A worker whose IPC channel closed cannot hear the primary: its requests fail at once, never after
// their full timeout.
import { describe, expect, it } from 'vitest'
import { Fixture, fixturePath } from './helpers/fixture.js'
import { get } from './helpers/http.js'

describe('requests on a closed IPC channel', () => {
  it('a pending request is rejected when the channel closes, and a new one at once: SHOAL_ERR_CHANNEL_CLOSED', async () => {
    const f = new Fixture('core-primary.mjs', { WORKERS: '1', FIXTURE_OPTS: JSON.stringify({ exec: fixturePath('channel-worker.mjs') }) })
    const started = await f.event('started')
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address ?? ''
    await get(`${address}/disconnect`)
    const asked = await f.event('asked')
    for (const which of ['pending', 'after'] as const) {
      expect(asked[which]).toMatchObject({ ok: false, code: 'SHOAL_ERR_CHANNEL_CLOSED', message: expect.stringMatching(/"(slow|echo)"/) })
      // Well under the 5000 ms timeout each request was given.
      expect((asked[which] as { ms: number }).ms).toBeLessThan(1000)
    }
  })
})
