import { describe, expect, it } from 'vitest'
import { CrashWindow, crashWeight, restartDelayMs } from './backoff.js'

describe('restartDelayMs', () => {
  const policy = { minMs: 250, maxMs: 30_000 }
  it('restarts the first crash at once, then doubles from minMs up to maxMs', () => {
    expect([1, 2, 3, 4, 5].map((n) => restartDelayMs(n, policy))).toEqual([0, 250, 500, 1000, 2000])
    expect(restartDelayMs(9, policy)).toBe(30_000)
    expect(restartDelayMs(1000, policy)).toBe(30_000)
  })
})

describe('CrashWindow', () => {
  it('trips when the weight inside the window reaches maxCrashes', () => {
    const w = new CrashWindow({ maxCrashes: 4, windowMs: 1000 })
    expect(w.record(0, crashWeight(true))).toBe(false)
    expect(w.record(10, crashWeight(false))).toBe(false) // a boot crash weighs 2
    expect(w.record(20, 1)).toBe(true)
  })

  it('forgets crashes older than the window', () => {
    const w = new CrashWindow({ maxCrashes: 3, windowMs: 1000 })
    w.record(0, 2)
    expect(w.record(1500, 2)).toBe(false)
    expect(w.weight()).toBe(2)
  })
})
