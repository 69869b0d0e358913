// Right-sized in a container: the worker count from affinity and a real cgroup CPU quota, the heap
// share in each worker's execArgv, and logs that survive (whole lines from 2 workers, the exit reason last).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { Fixture, sleep } from './helpers/fixture.js'
import { answerFromEach, get, pinWorkers } from './helpers/http.js'

const demo = fileURLToPath(new URL('../examples/express/dist/server.js', import.meta.url))
// The test machine's own settings must not decide the count.
const clean = { SHOAL_WORKERS: '', WEB_CONCURRENCY: '', SHOAL_MEMORY_MB: '', NODE_OPTIONS: '' }

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-c', '0', 'true'])
    return true
  } catch {
    return false
  }
}

/** The cgroup v1 `cpu` hierarchy's directory for this process, if it is mounted and writable by us. */
function writableCpuCgroup(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return undefined
  const mount = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f.includes('cgroup') && f[f.indexOf('-') + 1] === 'cgroup' && (f.at(-1) ?? '').split(',').includes('cpu'))
  const own = /^\d+:([^:]*\bcpu\b[^:]*):(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))
  if (!mount?.[4] || !own?.[2] || mount[3] !== '/') return undefined
  const dir = join(mount[4], own[2])
  return existsSync(join(dir, 'cpu.cfs_quota_us')) ? dir : undefined
}

async function startedWorkers(f: Fixture): Promise<number> {
  const line = await f
    .waitForOutput(/shoal demo \(express\): \d+ workers/, 60_000)
    .then(() => /shoal demo \(express\): (\d+) workers/.exec(f.stdout))
  return Number(line?.[1])
}

describe('workers: auto in a container', () => {
  const cpuParent = writableCpuCgroup()
  it.skipIf(!cpuParent)('starts 1 worker in a cgroup with a 1-CPU quota (v1 cpu controller)', async () => {
    const dir = join(cpuParent ?? '/', `shoal-test-${process.pid}`)
    mkdirSync(dir)
    let f: Fixture | undefined
    try {
      writeFileSync(join(dir, 'cpu.cfs_period_us'), '100000')
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), '100000')
      // Only the cpu controller: the fixture never leaves its memory cgroup.
      const enter = ['sh', '-c', `echo $$ > ${join(dir, 'cgroup.procs')} && exec "$@"`, 'sh']
      f = new Fixture(demo, { ...clean, PORT: '0', HOST: '127.0.0.1', WORKERS: 'auto' }, enter)
      expect(await startedWorkers(f)).toBe(1)
      expect(f.stderr).toMatch(/1 worker: cgroup quota 1 CPU\b/)
    } finally {
      f?.destroy()
      await f?.waitForExit(20_000).catch(() => {})
      // The workers die with the group; wait until the cgroup is empty, then remove it.
      for (let i = 0; i < 100 && existsSync(dir); i++) {
        try {
          rmdirSync(dir)
        } catch {
          await sleep(100)
        }
      }
      expect(existsSync(dir)).toBe(false)
    }
  })
  if (!cpuParent) it.skip('needs Linux, root and a writable cgroup v1 cpu controller', () => {})

  it.skipIf(!hasTaskset() || (process.platform === 'linux' && Number(execFileSync('nproc')) < 2))(
    'starts 1 worker under taskset -c 0 (1 CPU of affinity)',
    async () => {
      const f = new Fixture(demo, { ...clean, PORT: '0', HOST: '127.0.0.1', WORKERS: 'auto' }, ['taskset', '-c', '0'])
      expect(await startedWorkers(f)).toBe(1)
      expect(f.stderr).toMatch(/1 worker: CPU affinity 1 CPU|1 worker: os.availableParallelism\(\) 1/)
    },
  )

  it('SHOAL_WORKERS wins over the CPUs, and the decision is logged once', async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, SHOAL_WORKERS: '3', WEB_CONCURRENCY: '7' })
    const started = await f.event('started', undefined, 1, 60_000)
    expect((started.status as { workers: unknown[] }).workers).toHaveLength(3)
    expect(f.stderr.match(/3 workers: SHOAL_WORKERS=3/g)).toHaveLength(1)
  })
})

describe('heap per worker', () => {
  it('each worker gets --max-old-space-size for its share of the memory limit, and maxMemoryMb auto uses the share', async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, WORKERS: '2', SHOAL_MEMORY_MB: '1024', FIXTURE_OPTS: '{"maxMemoryMb":"auto"}' })
    const started = await f.event('started', undefined, 1, 60_000)
    const sizing = (await f.event('sizing')).sizing as { heapMb: number; maxMemoryMb: number }
    // 1024 MB - 128 MB for the primary = 448 MB per worker, 75 % of it heap.
    expect(sizing).toMatchObject({ heapMb: 336, maxMemoryMb: 448 })
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address
    const seen = new Map<number, { execArgv: string[]; heapLimitMb: number }>()
    for (const [pid, reply] of await answerFromEach(address ?? '', 2, '/execargv')) seen.set(pid, reply.json())
    expect(seen.size).toBe(2)
    for (const w of seen.values()) {
      expect(w.execArgv).toContain('--max-old-space-size=336')
      expect(w.heapLimitMb).toBeGreaterThan(300)
      // heap_size_limit adds the young generation: 336 + ~16 MB on Node 20, ~432 MB on Node 26 (bigger semi-spaces);
      // without the flag it is V8's default, over 2 GB on this machine.
      expect(w.heapLimitMb).toBeLessThan(600)
    }
    expect(f.stderr).toMatch(
      /2 workers: the workers option; heap 336 MB per worker \(share 448 MB of a 1024 MB memory limit\); maxMemoryMb auto: 448/,
    )
  })

  it('leaves the heap alone when the app sets --max-old-space-size in NODE_OPTIONS', async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, WORKERS: '1', SHOAL_MEMORY_MB: '1024', NODE_OPTIONS: '--max-old-space-size=200' })
    const started = await f.event('started', undefined, 1, 60_000)
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address
    const r = (await get(`${address}/execargv`)).json<{ execArgv: string[]; heapLimitMb: number }>()
    expect(r.execArgv.join(' ')).not.toMatch(/max-old-space-size/)
    // The app's 200 MB took effect: V8 adds its young generation on top (≈ 390 MB on Node 26), far below
    // the default of several GB on this machine.
    expect(r.heapLimitMb).toBeLessThan(1000)
    expect(f.stderr).toMatch(/memory limit 1024 MB, --max-old-space-size already set in NODE_OPTIONS/)
  })
})

describe('logs that survive', () => {
  it('16 KiB lines from 2 workers at once arrive whole, each with workerId, slot, pid and generation', async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, WORKERS: '2', LOGGER: 'json' }) // relayLogs is on by default
    const started = await f.event('started', undefined, 1, 60_000)
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address
    // Two requests on each worker at once, over connections pinned to each.
    const pins = await pinWorkers(address ?? '', 2)
    const answers = await Promise.all(pins.flatMap((p) => [1, 2].map(() => get(`${address}/log?kb=16&n=40`, p.agent, 60_000))))
    for (const p of pins) p.agent.destroy()
    expect(new Set(answers.map((a) => a.json().pid)).size).toBe(2)
    await f.waitUntil(() => (f.stderr.split('"big line"').length - 1 >= 160 ? true : undefined), '160 big lines', 60_000)
    await sleep(200)
    const lines = f.stderr.split('\n').filter((l) => l !== '')
    const parsed = lines.map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>
      } catch {
        throw new Error(`a torn line (${l.length} bytes): ${l.slice(0, 80)}…${l.slice(-80)}`)
      }
    })
    const big = parsed.filter((r) => r.msg === 'big line')
    expect(big).toHaveLength(160)
    for (const r of big) {
      expect(r).toMatchObject({ workerId: expect.any(Number), slot: expect.any(Number), pid: expect.any(Number), generation: 0 })
      expect((r.text as string).length).toBe(16 * 1024)
    }
    expect(new Set(big.map((r) => r.slot))).toEqual(new Set([0, 1]))
  })

  it("the app's pino carries workerId, slot and generation through its child, with one pid key", async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, WORKERS: '1', LOGGER: 'pino' })
    const started = await f.event('started', undefined, 1, 60_000)
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address
    await get(`${address}/log?kb=1&n=1`)
    await f.waitForOutput(/"msg":"big line"/, 20_000)
    const line = f.stderr.split('\n').find((l) => l.includes('"msg":"big line"')) ?? ''
    expect(JSON.parse(line)).toMatchObject({ workerId: 1, slot: 0, generation: 0, pid: expect.any(Number) })
    expect(line.match(/"pid":/g)).toHaveLength(1)
  })

  it('on a missed deadline the logger is flushed before the worker exits, and the exit reason is its last line', async () => {
    const f = new Fixture('sized-app.mjs', { ...clean, WORKERS: '1', LOGGER: 'buffered', FIXTURE_OPTS: '{"shutdownTimeoutMs":300}' })
    const started = await f.event('started', undefined, 1, 60_000)
    const worker = (started.status as { workers: { address: string; pid: number }[] }).workers[0]
    void get(`${worker?.address}/deadline`, false, 60_000).catch(() => {})
    await sleep(300)
    f.command('shutdown')
    await f.event('reply', (e) => e.cmd === 'shutdown', 1, 30_000)
    await f.waitForOutput(new RegExp(`"pid":${worker?.pid},.*"msg":"exiting 1`), 10_000)
    const raw = f.stderr.split('\n').filter((l) => l.includes(`"pid":${worker?.pid},`))
    const mine = raw.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(mine.at(-2)?.msg).toMatch(/shutdown deadline passed/)
    expect(mine.at(-1)).toMatchObject({
      workerId: 1,
      slot: 0,
      generation: 0,
      msg: expect.stringMatching(/^exiting 1: test; the shutdown deadline passed/),
    })
    // Bindings go through the logger's child: the lines shoal adds have one pid key.
    expect(raw.at(-1)?.match(/"pid":/g)).toHaveLength(1)
  })
})
