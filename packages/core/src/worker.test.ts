import { describe, expect, it } from 'vitest'
import { cleanupBudgetMs, exitCodeFor } from './worker.js'

describe('the exit owner', () => {
  it('exits 0 only when everything drained and cleaned up in time and nothing was uncaught', () => {
    expect(exitCodeFor({ drained: true, cleanedUp: true, fatal: false })).toBe(0)
    expect(exitCodeFor({ drained: false, cleanedUp: true, fatal: false })).toBe(1)
    expect(exitCodeFor({ drained: true, cleanedUp: false, fatal: false })).toBe(1)
    expect(exitCodeFor({ drained: true, cleanedUp: true, fatal: true })).toBe(1)
  })

  it('gives cleanup 1 s after a missed deadline, never more than the deadline itself', () => {
    expect(cleanupBudgetMs(5000)).toBe(1000)
    expect(cleanupBudgetMs(300)).toBe(300)
  })
})
