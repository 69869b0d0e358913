import { describe, expect, it } from 'vitest'
import { ReloadQueue, replaceAll } from './reload.js'

describe('replaceAll', () => {
  it('replaces slots in batches and stops at the first failure', async () => {
    const seen: number[] = []
    const run = replaceAll([0, 1, 2, 3], 1, async (slot) => {
      seen.push(slot)
      if (slot === 1) throw new Error('bad deploy')
    })
    await expect(run).rejects.toThrow('bad deploy')
    expect(seen).toEqual([0, 1])
  })

  it('runs `concurrency` slots at once', async () => {
    let running = 0
    let peak = 0
    await replaceAll([0, 1, 2, 3], 2, async () => {
      running++
      peak = Math.max(peak, running)
      await new Promise((r) => setTimeout(r, 5))
      running--
    })
    expect(peak).toBe(2)
  })
})

describe('ReloadQueue', () => {
  it('coalesces requests made during a reload into one follow-up', async () => {
    let runs = 0
    const gates: (() => void)[] = []
    const queue = new ReloadQueue(async () => {
      runs++
      await new Promise<void>((r) => gates.push(r))
      return runs
    })
    const first = queue.request()
    const followers = [queue.request(), queue.request(), queue.request()]
    expect(queue.busy).toBe(true)
    gates.shift()?.()
    expect(await first).toBe(1)
    await new Promise((r) => setTimeout(r, 0))
    gates.shift()?.()
    expect(await Promise.all(followers)).toEqual([2, 2, 2])
    expect(runs).toBe(2)
    expect(queue.busy).toBe(false)
  })
})
