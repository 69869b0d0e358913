import { describe, expect, it } from 'vitest'
import { closeFor, closeFrame, closeWindowMs, spreadDelaysMs } from './upgrade.js'
import { drainReasonFor } from './worker.js'

describe('closing upgraded connections on drain', () => {
  it('spreads closes over the whole window, one jittered point per equal part', () => {
    const delays = spreadDelaysMs(100, 2000)
    expect(delays).toHaveLength(100)
    const sorted = [...delays].sort((a, b) => a - b)
    sorted.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(i * 20)
      expect(d).toBeLessThan((i + 1) * 20)
    })
    expect(spreadDelaysMs(0, 2000)).toEqual([])
    expect(spreadDelaysMs(3, 0)).toEqual([0, 0, 0])
  })

  it('leaves the closing handshakes time before the deadline', () => {
    expect(closeWindowMs(2000, 5000)).toBe(2000)
    expect(closeWindowMs(10_000, 5000)).toBe(4000)
    expect(closeWindowMs(2000, 1000)).toBe(500)
    expect(closeWindowMs(0, 5000)).toBe(0)
  })

  it('writes an unmasked close frame with the code and a reason of at most 123 bytes', () => {
    expect([...closeFrame(1012, 'bye')]).toEqual([0x88, 5, 0x03, 0xf4, 98, 121, 101])
    expect(closeFrame(1001, 'x'.repeat(300))[1]).toBe(125)
  })

  it('maps every drain to reload (1012) or shutdown (1001) in one place', () => {
    expect(drainReasonFor(true, true)).toBe('reload') // rolling reload, memory, SIGTERM handover
    expect(drainReasonFor(false, true)).toBe('shutdown') // the cluster stops
    expect(drainReasonFor(undefined, true)).toBe('reload') // a worker draining by itself is replaced
    expect(drainReasonFor(undefined, false)).toBe('shutdown') // a single process
    expect(closeFor('reload').code).toBe(1012)
    expect(closeFor('shutdown').code).toBe(1001)
  })
})
