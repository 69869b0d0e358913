// How connections reach the workers (`balancing`), with real processes, the kernel's own view of the
// listening sockets, and foreign clients: ApacheBench opening a connection per request, nginx with
// its default upstream settings (HTTP/1.0, a new upstream connection per request).
import { readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { nodeHasReusePort } from '../packages/core/src/balancing.js'
import { Fixture, sleep } from './helpers/fixture.js'
import { get } from './helpers/http.js'
import { ab, freePort, listeningInodes, requirePeer, socketInodes, startNginx } from './helpers/peers.js'

type Mode = 'shared' | 'round-robin' | 'reuse-port'
interface Status {
  balancing: Mode
  workers: { pid: number; address: string }[]
}

const MIGRATE = '/proc/sys/net/ipv4/tcp_migrate_req'
const hasAb = requirePeer('ab', 'apache2-utils') !== undefined
const hasNginx = requirePeer('nginx', 'nginx') !== undefined
const reusePortNode = nodeHasReusePort(process.versions.node)

function readMigrate(): string | undefined {
  try {
    return readFileSync(MIGRATE, 'utf8').trim()
  } catch {
    return undefined
  }
}

/** Sets net.ipv4.tcp_migrate_req for the duration of `fn` (root only); false when it cannot. */
async function withMigrate(value: '0' | '1', fn: () => Promise<void>): Promise<boolean> {
  const before = readMigrate()
  if (before === undefined) return false
  try {
    writeFileSync(MIGRATE, value)
  } catch {
    return false
  }
  try {
    await fn()
  } finally {
    writeFileSync(MIGRATE, before)
  }
  return true
}
const canSetMigrate = (() => {
  const before = readMigrate()
  if (before === undefined) return false
  try {
    writeFileSync(MIGRATE, before)
    return true
  } catch {
    return false
  }
})()

async function start(balancing: Mode | undefined, { port = 0, extra = {} }: { port?: number; extra?: Record<string, unknown> } = {}) {
  const f = new Fixture('http-app.mjs', {
    WORKERS: '2',
    PORT: String(port),
    FIXTURE_OPTS: JSON.stringify({ ...(balancing && { balancing }), ...extra }),
  })
  const started = await f.event('started', () => true, 1, 30_000)
  const status = started.status as Status
  return { f, status, port: Number(new URL(status.workers[0]?.address ?? '').port) }
}

/** Who holds the listening socket(s), as the kernel sees them. */
function kernelView(port: number, primaryPid: number, workerPids: number[]) {
  const listening = listeningInodes(port)
  const held = (pid: number) => listening.filter((inode) => socketInodes(pid).has(inode)).length
  return { sockets: listening.length, primary: held(primaryPid), workers: workerPids.map(held) }
}

/** `n` requests, each on a new connection, `concurrency` at a time; the pids that answered. */
async function spread(url: string, n = 200, concurrency = 20): Promise<Map<number, number>> {
  const pids = new Map<number, number>()
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) {
        const reply = await get(`${url}/spin?ms=2`)
        const pid = reply.json<{ pid: number }>().pid
        pids.set(pid, (pids.get(pid) ?? 0) + 1)
      }
    }),
  )
  return pids
}

/** ab (no keep-alive, 50 at a time) against `url` while the cluster reloads; its counts. */
async function reloadUnderAb(f: Fixture, url: string) {
  const load = ab(`${url}/info`, { concurrency: 50, maxS: 90 })
  await sleep(500)
  const reply = await f.call('reload', {}, 60_000)
  expect(reply.ok, JSON.stringify(reply)).toBe(true)
  await sleep(500)
  return load.stop()
}

function expectClean(result: Awaited<ReturnType<typeof reloadUnderAb>>) {
  expect(result.errors, result.output).toEqual([])
  expect(result.failed, result.output).toBe(0)
  expect(result.non2xx, result.output).toBe(0)
  expect(result.complete, result.output).toBeGreaterThan(200)
}

const MODES: { mode: Mode; runs: boolean; why: string }[] = [
  { mode: 'shared', runs: true, why: '' },
  { mode: 'round-robin', runs: true, why: '' },
  {
    mode: 'reuse-port',
    runs: process.platform === 'linux' && reusePortNode && canSetMigrate,
    why: `needs Linux, Node ≥ 22.12 (this is ${process.versions.node}) and root to set tcp_migrate_req`,
  },
]

describe.sequential('balancing', () => {
  it('defaults to a shared listening socket that every worker accepts from (no hop through the primary)', async () => {
    const { f, status, port } = await start(undefined)
    expect(status.balancing).toBe('shared')
    const view = kernelView(
      port,
      f.pid,
      status.workers.map((w) => w.pid),
    )
    // One socket; each worker holds it (so it accepts itself), and the primary keeps it open.
    expect(view).toEqual({ sockets: 1, primary: 1, workers: [1, 1] })
    expect(f.output()).toMatch(/balancing 'shared'/)
  })

  for (const { mode, runs, why } of MODES) {
    describe.skipIf(!runs)(`${mode}${runs ? '' : ` (skipped: ${why})`}`, () => {
      const run = async (fn: () => Promise<void>) => {
        if (mode !== 'reuse-port') return fn()
        expect(await withMigrate('1', fn)).toBe(true)
      }

      it('is what the kernel shows, and spreads new connections over both workers', async () => {
        await run(async () => {
          const { f, status, port } = await start(mode, { port: mode === 'reuse-port' ? await freePort() : 0 })
          expect(status.balancing).toBe(mode)
          const workers = status.workers.map((w) => w.pid)
          const view = kernelView(port, f.pid, workers)
          if (mode === 'shared') expect(view).toEqual({ sockets: 1, primary: 1, workers: [1, 1] })
          // The primary accepts; workers hold no listening socket.
          if (mode === 'round-robin') expect(view).toEqual({ sockets: 1, primary: 1, workers: [0, 0] })
          // One socket per worker, bound by the worker itself.
          if (mode === 'reuse-port') expect(view).toEqual({ sockets: 2, primary: 0, workers: [1, 1] })

          const pids = await spread(`http://127.0.0.1:${port}`)
          expect([...pids.keys()].sort()).toEqual([...workers].sort())
          for (const [, count] of pids) expect(count).toBeGreaterThanOrEqual(10)
        })
      })

      it.skipIf(!hasAb)(
        'loses nothing in a rolling reload under ab -c 50 without keep-alive',
        async () => {
          await run(async () => {
            const { f, port } = await start(mode, { port: mode === 'reuse-port' ? await freePort() : 0 })
            expectClean(await reloadUnderAb(f, `http://127.0.0.1:${port}`))
          })
        },
        120_000,
      )

      it.skipIf(!hasAb || !hasNginx)(
        'loses nothing in a rolling reload behind nginx with its default proxy settings (0 502s)',
        async () => {
          await run(async () => {
            const { f, port } = await start(mode, { port: mode === 'reuse-port' ? await freePort() : 0 })
            const nginx = await startNginx(port)
            const result = await reloadUnderAb(f, nginx.url)
            expectClean(result)
            expect(nginx.errorLog(), 'nginx logs every failed upstream request').not.toMatch(/upstream/)
          })
        },
        120_000,
      )
    })
  }

  it.skipIf(!hasAb || !hasNginx)(
    'SIGTERM under connection-per-request load: every request sent before the listener closed is answered, exit 0',
    async () => {
      // The orchestrator's view: SIGTERM, readiness turns 503 and the load balancer moves traffic away
      // within the readiness delay; only then do the workers stop listening and drain.
      const { f, port } = await start(undefined, { extra: { readinessDelayMs: 4000 } })
      const nginx = await startNginx(port)
      const direct = ab(`http://127.0.0.1:${port}/info`, { concurrency: 25, maxS: 60 })
      const proxied = ab(`${nginx.url}/info`, { concurrency: 25, maxS: 60 })
      await sleep(1000)
      f.signal('SIGTERM')
      await sleep(1000) // the balancer notices: the load stops well before the listener closes (3 s of margin)
      const [a, b] = await Promise.all([direct.stop(), proxied.stop()])
      expectClean(a)
      expectClean(b)
      expect(await f.waitForExit(30_000)).toEqual({ code: 0, signal: null })
      expect(nginx.errorLog()).not.toMatch(/upstream/)
    },
    120_000,
  )

  it("falls back to round-robin, in one log line that says why, where 'reuse-port' cannot run", async () => {
    const check = async (reason: RegExp) => {
      const { f, status, port } = await start('reuse-port', { port: await freePort() })
      expect(status.balancing).toBe('round-robin')
      const lines = f
        .output()
        .split('\n')
        .filter((l) => l.includes("balancing 'reuse-port' is not available"))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(reason)
      expect(lines[0]).toMatch(/using 'round-robin'/)
      expect(
        kernelView(
          port,
          f.pid,
          status.workers.map((w) => w.pid),
        ),
      ).toEqual({ sockets: 1, primary: 1, workers: [0, 0] })
      const pids = await spread(`http://127.0.0.1:${port}`, 40, 4)
      expect(pids.size).toBe(2)
      f.destroy()
    }
    if (!reusePortNode) return check(/no reusePort \(22\.12 or later\)/)
    // A Node that has reusePort, on a kernel that would reset a draining worker's queue.
    if (canSetMigrate) expect(await withMigrate('0', () => check(/tcp_migrate_req is 0/))).toBe(true)
    else if (readMigrate() !== '1') await check(/tcp_migrate_req is/)
  }, 90_000)

  it.skipIf(!reusePortNode || !canSetMigrate)(
    "'reuse-port' on port 0 fails the start with an error that says why",
    async () => {
      await withMigrate('1', async () => {
        const f = new Fixture('http-app.mjs', { WORKERS: '2', PORT: '0', FIXTURE_OPTS: JSON.stringify({ balancing: 'reuse-port' }) })
        const exit = await f.waitForExit(30_000)
        expect(exit.code).not.toBe(0)
        expect(f.output()).toMatch(/balancing 'reuse-port' needs a fixed port/)
      })
    },
    60_000,
  )
})
