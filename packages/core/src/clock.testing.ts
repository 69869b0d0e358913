// A fake clock for unit tests of timed logic (excluded from the build).
import type { Clock } from './schedule.js'

/** A clock whose time moves only when the test says; due timers fire in order. */
export function fakeClock(start = 0) {
  let now = start
  let seq = 0
  const timers = new Map<number, { at: number; fn: () => void }>()
  const clock: Clock = {
    now: () => now,
    setTimer: (ms, fn) => {
      const id = ++seq
      timers.set(id, { at: now + ms, fn })
      return { cancel: () => timers.delete(id) }
    },
  }
  const flush = async () => {
    for (let i = 0; i < 10; i++) await Promise.resolve()
  }
  /** Advances to `to`, firing every timer due on the way (and the ones those arm). */
  const advance = async (to: number, { late = false } = {}) => {
    // late: the event loop was blocked until `to`, so every due timer fires at `to`
    if (late) now = to
    for (;;) {
      const due = [...timers.entries()].filter(([, t]) => t.at <= to).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0]
      if (!due) break
      timers.delete(due[0])
      now = Math.max(now, due[1].at)
      due[1].fn()
      await flush()
    }
    now = to
    await flush()
  }
  return { clock, advance, pending: () => timers.size }
}
