// The slot state machine with a fake spawn and clock: every race of the supervisor, in milliseconds.
import { describe, expect, it } from 'vitest'
import { KILL_MARGIN_MS, type SlotHost, SlotMachine, type SlotNote, type SlotPolicy } from './slots.js'

const policy: SlotPolicy = {
  readyTimeoutMs: 1000,
  shutdownTimeoutMs: 500,
  restartBackoff: { minMs: 100, maxMs: 400, healthyAfterMs: 10_000 },
  crashLoop: { maxCrashes: 10, windowMs: 60_000 },
}

class FakeHost implements SlotHost {
  t = 0
  nextKey = 1
  readonly timers: { at: number; fn: () => void; cancelled: boolean }[] = []
  readonly spawned: { key: number; slot: number; generation: number }[] = []
  readonly killed: number[] = []
  readonly drained: { key: number; reason: string; deadlineMs: number }[] = []
  readonly notes: SlotNote[] = []
  /** Makes the next spawns throw synchronously (EAGAIN from cluster.fork). */
  throwOnSpawn = 0

  spawn(slot: number, generation: number) {
    if (this.throwOnSpawn > 0) {
      this.throwOnSpawn--
      throw new Error('spawn EAGAIN')
    }
    const key = this.nextKey++
    this.spawned.push({ key, slot, generation })
    return { key, pid: 1000 + key }
  }
  kill(key: number) {
    this.killed.push(key)
  }
  drain(key: number, reason: string, deadlineMs: number) {
    this.drained.push({ key, reason, deadlineMs })
  }
  setTimer(ms: number, fn: () => void) {
    const timer = { at: this.t + ms, fn, cancelled: false }
    this.timers.push(timer)
    return { cancel: () => (timer.cancelled = true) }
  }
  now() {
    return this.t
  }
  notify(note: SlotNote) {
    this.notes.push(note)
  }

  /** Moves the clock, firing due timers in order. */
  advance(ms: number) {
    const until = this.t + ms
    for (;;) {
      const due = this.timers.filter((x) => !x.cancelled && x.at <= until).sort((a, b) => a.at - b.at)[0]
      if (!due) break
      this.timers.splice(this.timers.indexOf(due), 1)
      this.t = due.at
      due.fn()
    }
    this.t = until
  }
  live(): number {
    return this.timers.filter((x) => !x.cancelled).length
  }
  of<T extends SlotNote['type']>(type: T): Extract<SlotNote, { type: T }>[] {
    return this.notes.filter((n): n is Extract<SlotNote, { type: T }> => n.type === type)
  }
  slotKeys(slot: number): number[] {
    return this.spawned.filter((s) => s.slot === slot).map((s) => s.key)
  }
}

function setup(count = 2, overrides: Partial<SlotPolicy> = {}) {
  const host = new FakeHost()
  const machine = new SlotMachine(count, { ...policy, ...overrides }, host)
  machine.start()
  return { host, machine }
}

/** Starts and readies every slot; returns the keys by slot. */
function running(count = 2, overrides: Partial<SlotPolicy> = {}) {
  const { host, machine } = setup(count, overrides)
  for (const { key } of [...host.spawned]) machine.ready(key, `http://127.0.0.1:${key}`)
  return { host, machine, keys: host.spawned.map((s) => s.key) }
}

const flush = () => new Promise((resolve) => setImmediate(resolve))

describe('SlotMachine: start and ready', () => {
  it('forks each slot once, even when start() is called again', () => {
    const { host, machine } = setup(3)
    machine.start()
    expect(host.spawned.map((s) => s.slot)).toEqual([0, 1, 2])
    expect([0, 1, 2].map((i) => machine.state(i))).toEqual(['starting', 'starting', 'starting'])
  })

  it('says when every slot has been ready, and cancels the ready timeout', () => {
    const { host, machine } = setup(2)
    machine.ready(1, 'a')
    expect(host.of('ready').at(-1)?.allReady).toBe(false)
    machine.ready(2, 'b')
    expect(host.of('ready').at(-1)?.allReady).toBe(true)
    expect(host.live()).toBe(0)
    host.advance(policy.readyTimeoutMs * 2)
    expect(host.killed).toEqual([])
  })

  it('a worker not ready in time is killed; its exit is a failed boot (weight 2) and it is replaced', () => {
    const { host, machine } = setup(1)
    host.advance(policy.readyTimeoutMs)
    expect(host.killed).toEqual([1])
    expect(host.of('ready-timeout')).toHaveLength(1)
    machine.exited(1, null, 'SIGKILL')
    expect(host.of('crash')[0]).toMatchObject({ ready: false, reason: expect.stringContaining('not ready within readyTimeoutMs') })
    expect(host.spawned).toHaveLength(2)
  })

  it('looks one worker up by key, and forgets it once gone', () => {
    const { machine } = running(2)
    expect(machine.worker(2)).toMatchObject({ key: 2, slot: 1, role: 'current', phase: 'ready', address: 'http://127.0.0.1:2' })
    machine.exited(2, 0, null)
    expect(machine.worker(2)).toBeUndefined()
  })

  it('ignores events for workers it does not know, and a second ready', () => {
    const { host, machine } = running(1)
    machine.ready(99, 'x')
    machine.exited(99, 1, null)
    machine.drainAnnounced(99, 100, true)
    machine.stuck(99, 1)
    machine.ready(1, 'again')
    expect(host.spawned).toHaveLength(1)
    expect(host.of('ready')).toHaveLength(1)
  })
})

describe('SlotMachine: crashes, backoff and the breaker', () => {
  it('restarts at once, then after minMs doubling, each slot on its own', () => {
    const { host, machine } = running(1)
    machine.exited(1, 1, null)
    expect(host.spawned).toHaveLength(2) // immediate
    machine.ready(2, 'a')
    machine.exited(2, 1, null)
    expect(machine.state(0)).toBe('backoff')
    expect(host.spawned).toHaveLength(2)
    host.advance(99)
    expect(host.spawned).toHaveLength(2)
    host.advance(1)
    expect(host.spawned).toHaveLength(3)
    expect(host.of('restart-scheduled').map((n) => n.delayMs)).toEqual([0, 100])
  })

  it('an exit that arrives twice restarts once', () => {
    const { host, machine } = running(1)
    machine.exited(1, 1, null)
    machine.exited(1, 1, null)
    expect(host.spawned).toHaveLength(2)
    expect(host.of('crash')).toHaveLength(1)
  })

  it('trips the breaker at maxCrashes: no fork after it, not even from a pending backoff timer', () => {
    const { host, machine } = running(2, { crashLoop: { maxCrashes: 4, windowMs: 60_000 } })
    machine.exited(1, 1, null) // slot 0: weight 1, immediate restart (key 3)
    machine.exited(2, 1, null) // slot 1: weight 2, immediate restart (key 4)
    machine.exited(3, 1, null) // slot 0: never ready, weight 4 → trips
    expect(host.of('crash-loop')).toHaveLength(1)
    const forks = host.spawned.length
    host.advance(10_000)
    machine.exited(4, 1, null)
    expect(host.spawned.length).toBe(forks)
  })
})

describe('SlotMachine: spawn errors', () => {
  it('an async spawn error is a failed boot: the slot never stays starting, and backs off', () => {
    const { host, machine } = setup(1)
    machine.spawnFailed(1, 'spawn ENOENT')
    expect(host.of('spawn-error')).toHaveLength(1)
    expect(host.of('crash')[0]).toMatchObject({ ready: false, reason: expect.stringContaining('ENOENT') })
    expect(host.spawned).toHaveLength(2) // first restart immediate
    machine.spawnFailed(2, 'spawn ENOENT')
    expect(machine.state(0)).toBe('backoff')
    machine.exited(2, null, null) // a late exit for the same failure changes nothing
    expect(host.of('crash')).toHaveLength(2)
  })

  it('spawn errors trip the breaker (weight 2 each) instead of hanging', () => {
    const { host, machine } = setup(2, { crashLoop: { maxCrashes: 10, windowMs: 60_000 } })
    for (let i = 0; i < 20 && host.of('crash-loop').length === 0; i++) {
      const starting = machine.workers().filter((w) => w.phase === 'starting')
      for (const w of starting) machine.spawnFailed(w.key, 'spawn EAGAIN')
      host.advance(1000)
    }
    expect(host.of('crash-loop')).toHaveLength(1)
    expect(host.of('crash')).toHaveLength(5)
  })

  it('a synchronous spawn throw is handled the same way', () => {
    const host = new FakeHost()
    host.throwOnSpawn = 2
    const machine = new SlotMachine(1, policy, host)
    machine.start()
    expect(host.of('spawn-error')).toHaveLength(2)
    expect(machine.state(0)).toBe('backoff')
    host.advance(100)
    expect(machine.state(0)).toBe('starting')
  })

  it('a replacement that cannot spawn fails the reload; the old worker keeps serving', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    machine.spawnFailed(2, 'spawn EMFILE')
    await expect(replaced).rejects.toThrow(/could not be started: spawn EMFILE/)
    expect(machine.serving(0)?.key).toBe(1)
    expect(host.of('crash')).toHaveLength(0)
  })

  it('shutdown resolves with a slot whose spawn failed', async () => {
    const { host, machine } = setup(1)
    machine.spawnFailed(1, 'spawn ENOENT')
    machine.spawnFailed(2, 'spawn ENOENT')
    await expect(machine.shutdown('test')).resolves.toBe(0)
    host.advance(10_000)
    expect(host.spawned).toHaveLength(2)
  })
})

describe('SlotMachine: rolling replacement', () => {
  it('forks the candidate, promotes it when ready, drains the old one, resolves after it exited', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    let done = false
    const replaced = machine.replace(0, 'reload').then(() => (done = true))
    expect(host.spawned.at(-1)).toMatchObject({ key: 2, generation: 1 })
    machine.ready(2, 'b')
    expect(host.drained).toEqual([{ key: 1, reason: 'reload', deadlineMs: policy.shutdownTimeoutMs }])
    expect(machine.serving(0)?.key).toBe(2)
    await flush()
    expect(done).toBe(false)
    machine.exited(1, 0, null)
    await replaced
    expect(host.of('exit').at(-1)).toMatchObject({ key: 1, planned: true })
    expect(host.spawned).toHaveLength(2)
  })

  it('a candidate that crashes fails the replacement; no crash counted, the old worker serves', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    machine.fatal(2, 'Error: boom at boot\n    at file.js:1')
    machine.exited(2, 1, null)
    await expect(replaced).rejects.toThrow('new worker exited with code 1: Error: boom at boot |     at file.js:1')
    expect(host.of('crash')).toHaveLength(0)
    expect(machine.serving(0)?.key).toBe(1)
    expect(host.spawned).toHaveLength(2)
  })

  it('a candidate not ready in time is killed and the replacement fails', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    host.advance(policy.readyTimeoutMs)
    expect(host.killed).toEqual([2])
    machine.exited(2, null, 'SIGKILL')
    await expect(replaced).rejects.toThrow(/not ready within readyTimeoutMs/)
  })

  it('race: the serving worker crashes while its candidate boots; the candidate takes the slot, nothing else is forked', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    machine.exited(1, 1, null)
    expect(host.spawned).toHaveLength(2)
    expect(machine.state(0)).toBe('starting')
    machine.ready(2, 'b')
    await replaced
    expect(machine.workers().map((w) => w.key)).toEqual([2])
  })

  it('race (orphan worker): a reload reaches a slot waiting out its backoff; the pending restart never forks a second worker', async () => {
    const { host, machine } = running(2)
    machine.exited(1, 1, null) // immediate restart: key 3
    machine.ready(3, 'c')
    machine.exited(3, 1, null) // backoff 100 ms
    expect(machine.state(0)).toBe('backoff')
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    expect(host.spawned.at(-1)).toMatchObject({ slot: 0, generation: 1 })
    const fresh = host.spawned.at(-1)?.key as number
    host.advance(10_000) // the old backoff timer would have fired here
    machine.ready(fresh, 'd')
    await replaced
    expect(host.slotKeys(0)).toEqual([1, 3, fresh])
    expect(machine.workers().filter((w) => w.slot === 0)).toHaveLength(1)
  })

  it('a slot still booting older code gets its worker replaced at once (it never served)', async () => {
    const { host, machine } = setup(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    expect(host.killed).toEqual([1])
    expect(host.spawned.at(-1)).toMatchObject({ key: 2, generation: 1 })
    machine.exited(1, null, 'SIGKILL')
    expect(host.of('crash')).toHaveLength(0)
    machine.ready(2, 'b')
    await replaced
    expect(host.spawned).toHaveLength(2)
  })

  it('a slot already on the new code is left alone', async () => {
    const { host, machine } = running(1)
    await machine.replace(0, 'reload')
    expect(host.spawned).toHaveLength(1)
  })

  it('refresh (memory ceiling) replaces the worker on the same code', async () => {
    const { machine } = running(1)
    const refreshed = machine.refresh(0, 'reload')
    await expect(machine.refresh(0, 'reload')).rejects.toThrow(/no serving worker to replace/)
    machine.ready(2, 'b')
    machine.exited(1, 0, null)
    await refreshed
    expect(machine.serving(0)?.key).toBe(2)
  })
})

describe('SlotMachine: drains the worker starts itself', () => {
  it('a SIGTERM aimed at one worker: the replacement is forked at once and the worker gets a kill timer', () => {
    const { host, machine } = running(1)
    machine.drainAnnounced(1, 1000, false)
    expect(host.spawned).toHaveLength(2)
    expect(machine.workers().find((w) => w.key === 1)).toMatchObject({ role: 'retiring', phase: 'draining' })
    expect(host.of('crash')).toHaveLength(0)
    machine.ready(2, 'b')
    host.advance(1000 + KILL_MARGIN_MS - 1)
    expect(host.killed).toEqual([])
    host.advance(1)
    expect(host.killed).toEqual([1])
    expect(host.of('kill-deadline')).toHaveLength(1)
    machine.exited(1, null, 'SIGKILL')
    expect(host.spawned).toHaveLength(2)
    expect(host.of('exit').at(-1)).toMatchObject({ planned: true })
  })

  it('an uncaught exception (fatal drain) is a crash: counted, replaced at once, and backs off the next time', () => {
    const { host, machine } = running(1)
    machine.drainAnnounced(1, 1000, true)
    expect(host.of('crash')).toHaveLength(1)
    expect(host.spawned).toHaveLength(2)
    machine.ready(2, 'b')
    machine.drainAnnounced(2, 1000, true)
    expect(machine.state(0)).toBe('backoff')
    machine.exited(1, 1, null)
    machine.exited(2, 1, null)
    expect(host.of('crash')).toHaveLength(2)
    expect(host.of('exit').map((e) => e.planned)).toEqual([false, false])
  })

  it('a drain announced twice is one drain', () => {
    const { host, machine } = running(1)
    machine.drainAnnounced(1, 1000, false)
    machine.drainAnnounced(1, 1000, false)
    expect(host.spawned).toHaveLength(2)
  })

  it('a drain the primary asked for does not fork another replacement', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    machine.ready(2, 'b')
    machine.drainAnnounced(1, 500, false) // the old worker confirms the drain it was asked for
    machine.exited(1, 0, null)
    await replaced
    expect(host.spawned).toHaveLength(2)
  })
})

describe('SlotMachine: handover (a SIGTERM aimed at one worker)', () => {
  it('boots the replacement while the worker serves, then asks it to drain', async () => {
    const { host, machine } = running(1)
    let answered = false
    const handed = machine.handover(1, 'SIGTERM').then(() => (answered = true))
    expect(host.spawned).toHaveLength(2)
    expect(machine.serving(0)?.key).toBe(1)
    expect(host.drained).toEqual([])
    machine.ready(2, 'b')
    expect(host.drained).toEqual([{ key: 1, reason: 'SIGTERM', deadlineMs: policy.shutdownTimeoutMs }])
    machine.drainAnnounced(1, policy.shutdownTimeoutMs, false) // its confirmation: not a second replacement
    machine.exited(1, 0, null)
    await handed
    expect(answered).toBe(true)
    expect(host.spawned).toHaveLength(2)
    expect(host.of('crash')).toHaveLength(0)
  })

  it('a replacement that fails answers anyway; the worker then drains by itself and is replaced at once', async () => {
    const { host, machine } = running(1)
    const handed = machine.handover(1, 'SIGTERM')
    machine.exited(2, 1, null)
    await handed
    machine.drainAnnounced(1, policy.shutdownTimeoutMs, false)
    expect(host.spawned).toHaveLength(3)
    expect(machine.state(0)).toBe('starting')
  })

  it('during a reload: the reload’s booting replacement serves the handover too, no second one is forked', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    const handed = machine.handover(1, 'SIGTERM')
    expect(host.spawned).toHaveLength(2)
    machine.ready(2, 'b')
    expect(host.drained).toEqual([{ key: 1, reason: 'reload', deadlineMs: policy.shutdownTimeoutMs }])
    machine.exited(1, 0, null)
    await Promise.all([replaced, handed])
    expect(machine.workers().map((w) => w.key)).toEqual([2])
  })

  it('answers at once for a worker that does not serve, or during shutdown', async () => {
    const { host, machine } = setup(1)
    await machine.handover(1, 'SIGTERM')
    machine.ready(1, 'a')
    void machine.shutdown('test')
    await machine.handover(1, 'SIGTERM')
    expect(host.spawned).toHaveLength(1)
  })
})

describe('SlotMachine: stuck workers', () => {
  it('kills a stuck worker now, counts a crash and forks its replacement', () => {
    const { host, machine } = running(1)
    machine.stuck(1, 5000)
    expect(host.killed).toEqual([1])
    expect(host.of('crash')[0]).toMatchObject({ ready: true, reason: 'worker stuck for 5000 ms' })
    expect(host.spawned).toHaveLength(2)
    machine.exited(1, null, 'SIGKILL')
    machine.stuck(1, 6000)
    expect(host.spawned).toHaveLength(2)
  })
})

describe('SlotMachine: shutdown', () => {
  it('cancels pending restarts, kills workers that never served, drains the rest; 0 when all drained', async () => {
    const { host, machine } = running(3)
    machine.exited(1, 1, null) // slot 0 → immediate restart (key 4), still starting
    machine.ready(4, 'd')
    machine.exited(4, 1, null) // slot 0 → backoff
    const stopped = machine.shutdown('SIGTERM')
    expect(host.drained.map((d) => d.key).sort()).toEqual([2, 3])
    host.advance(10_000) // would fire the backoff, and the kill timers
    expect(host.spawned).toHaveLength(4)
    machine.exited(2, 0, null)
    machine.exited(3, 0, null)
    await expect(stopped).resolves.toBe(0)
  })

  it('1 when a worker that served exited uncleanly; a killed starting worker does not count', async () => {
    const { host, machine } = setup(2)
    machine.ready(1, 'a')
    const stopped = machine.shutdown('SIGTERM')
    expect(host.killed).toEqual([2])
    machine.exited(2, null, 'SIGKILL')
    host.advance(policy.shutdownTimeoutMs + KILL_MARGIN_MS)
    expect(host.killed).toEqual([2, 1])
    machine.exited(1, null, 'SIGKILL')
    await expect(stopped).resolves.toBe(1)
  })

  it('a reload waiting for its candidate fails when shutdown begins, and no reload starts after', async () => {
    const { host, machine } = running(1)
    machine.generation = 1
    const replaced = machine.replace(0, 'reload')
    const stopped = machine.shutdown('SIGTERM')
    expect(host.killed).toEqual([2])
    machine.exited(2, null, 'SIGKILL')
    await expect(replaced).rejects.toThrow()
    await expect(machine.replace(0, 'reload')).rejects.toThrow(/shutting down/)
    machine.exited(1, 0, null)
    await expect(stopped).resolves.toBe(0)
  })

  it('an exit during shutdown is never a crash and forks nothing', async () => {
    const { host, machine } = running(1)
    const stopped = machine.shutdown('SIGTERM')
    machine.exited(1, 1, null)
    expect(host.of('crash')).toHaveLength(0)
    expect(host.spawned).toHaveLength(1)
    await expect(stopped).resolves.toBe(1)
  })
})
