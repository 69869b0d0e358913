import { describe, expect, it } from 'vitest'
import { codes, ShoalError } from './errors.js'
import type { Logger } from './logger.js'
import type { SharedEntry } from './protocol.js'
import { SharedStore } from './shared.js'

function recorder() {
  const errors: string[] = []
  const log: Logger = {
    info: () => {},
    warn: () => {},
    debug: () => {},
    error: (obj: object | string, msg?: string) => {
      const err = typeof obj === 'object' ? (obj as { err?: unknown }).err : undefined
      errors.push(`${msg ?? obj} ${err instanceof Error ? err.message : ''}`)
    },
  }
  const published: [string, SharedEntry][] = []
  return { log, errors, published, publish: (name: string, entry: SharedEntry) => published.push([name, entry]) }
}

const throwing = () => ({
  get count(): number {
    throw new Error('getter exploded')
  },
})

describe('SharedStore with a value that throws while inspected', () => {
  it('set() throws ShoalError SHOAL_ERR_NOT_SERIALIZABLE, not the getter’s error, and keeps the last value', () => {
    const r = recorder()
    const store = new SharedStore({ usersCount: { value: 1 } }, r.log, r.publish)
    void store.start()
    let thrown: unknown
    try {
      store.set('usersCount', throwing())
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(ShoalError)
    expect(thrown).toMatchObject({
      code: codes.SHOAL_ERR_NOT_SERIALIZABLE,
      message: 'shared value "usersCount" cannot be sent to workers: `.count` threw while it was read: getter exploded',
    })
    expect(store.get('usersCount')).toBe(1)
    store.stop()
  })

  it('a compute returning one is logged, the last good value kept, and the source recomputed on schedule', async () => {
    const r = recorder()
    let calls = 0
    const compute = () => {
      calls++
      return calls === 1 ? 100 : calls <= 3 ? throwing() : 200
    }
    const store = new SharedStore({ usersCount: { everyMs: 10, compute } }, r.log, r.publish)
    await store.start()
    expect(store.get('usersCount')).toBe(100)
    const deadline = Date.now() + 5000
    while (store.get('usersCount') !== 200 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    store.stop()
    expect(store.get('usersCount')).toBe(200)
    expect(r.published.map(([, e]) => e.value)).toEqual([100, 200])
    expect(r.errors.filter((e) => e.includes('getter exploded'))).toHaveLength(2)
    expect(r.errors[0]).toContain('shared value rejected, last good value kept')
  })

  it('a first value that throws while inspected does not fail start()', async () => {
    const r = recorder()
    const store = new SharedStore({ a: { value: throwing() }, b: { everyMs: 60_000, compute: throwing } }, r.log, r.publish)
    await expect(store.start()).resolves.toBeUndefined()
    store.stop()
    expect(r.published).toEqual([])
    expect(r.errors).toHaveLength(2)
  })
})

describe('SharedStore compute failures', () => {
  it('counts each failed compute per source (shoal_shared_compute_failures_total), and keeps the last good value', async () => {
    const r = recorder()
    let calls = 0
    const compute = () => {
      calls++
      if (calls > 1) throw new Error('db down')
      return 7
    }
    const store = new SharedStore({ usersCount: { everyMs: 10, compute } }, r.log, r.publish)
    await store.start()
    await new Promise((resolve) => setTimeout(resolve, 100))
    store.stop()
    expect(store.failures().get('usersCount')).toBeGreaterThanOrEqual(2)
    expect([...store.failures().keys()]).toEqual(['usersCount'])
    expect(store.get('usersCount')).toBe(7)
  })
})
