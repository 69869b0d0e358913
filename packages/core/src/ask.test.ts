import { describe, expect, it } from 'vitest'
import { WorkerAsks } from './ask.js'
import { fakeClock } from './clock.testing.js'
import type { PrimaryMessage } from './protocol.js'

function setup(live: number[]) {
  const c = fakeClock()
  const sent: [number, PrimaryMessage][] = []
  const asks = new WorkerAsks({ live: () => live, send: (key, m) => sent.push([key, m]) > 0, clock: c.clock })
  return { c, sent, asks, live }
}

const idOf = (m: PrimaryMessage) => (m.type === 'ask' ? m.id : -1)

describe('WorkerAsks', () => {
  it('sends to a live worker and settles with its answer; an answer from another worker is ignored', async () => {
    const { sent, asks } = setup([1, 2])
    const p = asks.ask('work', { n: 1 })
    const [key, message] = sent[0] ?? []
    expect(message).toMatchObject({ type: 'ask', cmd: 'work', payload: { n: 1 } })
    asks.answered(key === 1 ? 2 : 1, idOf(message as PrimaryMessage), { ok: true, value: 'wrong' })
    asks.answered(key as number, idOf(message as PrimaryMessage), { ok: true, value: 'done' })
    await expect(p).resolves.toBe('done')
    expect(asks.size).toBe(0)
  })

  it('a worker that dies before it answers: the same request goes to another live worker', async () => {
    const s = setup([1, 2])
    const p = s.asks.ask('work', 7)
    const [first, message] = s.sent[0] ?? []
    s.live.splice(s.live.indexOf(first as number), 1)
    s.asks.gone(first as number)
    const [second, again] = s.sent[1] ?? []
    expect(second).not.toBe(first)
    expect(idOf(again as PrimaryMessage)).toBe(idOf(message as PrimaryMessage))
    s.asks.answered(second as number, idOf(again as PrimaryMessage), { ok: true, value: 1 })
    await expect(p).resolves.toBe(1)
  })

  it('waits for a worker to be ready when none is, and times out naming why', async () => {
    const s = setup([])
    const waited = s.asks.ask('work', 1, { timeoutMs: 100 })
    expect(s.sent).toEqual([])
    s.live.push(3)
    s.asks.changed()
    expect(s.sent[0]?.[0]).toBe(3)
    s.asks.answered(3, idOf(s.sent[0]?.[1] as PrimaryMessage), { ok: false, error: { code: 'SHOAL_ERR_HANDLER_FAILED', message: 'boom' } })
    await expect(waited).rejects.toMatchObject({ code: 'SHOAL_ERR_HANDLER_FAILED', message: 'boom' })
    s.live.length = 0
    const lost = s.asks.ask('work', 1, { timeoutMs: 100 })
    await s.c.advance(100)
    await expect(lost).rejects.toMatchObject({ code: 'SHOAL_ERR_REQUEST_TIMEOUT', message: expect.stringMatching(/no worker was ready/) })
  })

  it('refuses a payload that cannot cross IPC, and abandons everything on stop', async () => {
    const s = setup([1])
    await expect(s.asks.ask('work', { at: new Date(0) })).rejects.toMatchObject({ code: 'SHOAL_ERR_NOT_SERIALIZABLE' })
    const p = s.asks.ask('work', 1)
    s.asks.stop()
    await expect(p).rejects.toMatchObject({ code: 'SHOAL_ERR_SHUTTING_DOWN' })
  })
})

describe('WorkerAsks.askWorker (one worker, no retry: metrics collection)', () => {
  it('asks that worker only; a late answer is ignored after the timeout; exit rejects as closed', async () => {
    const s = setup([1, 2])
    const answered = s.asks.askWorker(2, 'shoal:metrics', 100)
    expect(s.sent.map(([k]) => k)).toEqual([2])
    s.asks.answered(1, idOf(s.sent[0]?.[1] as PrimaryMessage), { ok: true, value: 'wrong worker' })
    s.asks.answered(2, idOf(s.sent[0]?.[1] as PrimaryMessage), { ok: true, value: [] })
    await expect(answered).resolves.toEqual([])

    const slow = s.asks.askWorker(1, 'shoal:metrics', 100)
    await s.c.advance(100)
    await expect(slow).rejects.toMatchObject({ code: 'SHOAL_ERR_REQUEST_TIMEOUT' })
    s.asks.answered(1, idOf(s.sent[1]?.[1] as PrimaryMessage), { ok: true, value: 'late' })
    expect(s.asks.size).toBe(0)

    const lost = s.asks.askWorker(1, 'shoal:metrics', 100)
    s.asks.gone(1)
    await expect(lost).rejects.toMatchObject({ code: 'SHOAL_ERR_CHANNEL_CLOSED' })
    expect(s.sent).toHaveLength(3) // never handed to worker 2
  })
})
