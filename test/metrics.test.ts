// @shoal/metrics end to end: real primaries and workers, real prom-client, real HTTP scrapes through
// the app's own port, promtool (and a real Prometheus server) on the output.
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { Fixture, sleep } from './helpers/fixture.js'
import { get, pinWorkers, type Reply } from './helpers/http.js'

interface Started {
  f: Fixture
  address: string
}

async function start(env: Record<string, string> = {}, opts: Record<string, unknown> = {}): Promise<Started> {
  const f = new Fixture('metrics-app.mjs', { WORKERS: '2', FIXTURE_OPTS: JSON.stringify(opts), ...env })
  const started = await f.event('started')
  const status = started.status as { workers: { address: string }[] }
  return { f, address: status.workers[0]?.address ?? '' }
}

/** One sample's value from the exposition text; undefined when the series is absent. */
function sample(body: string, series: string): number | undefined {
  for (const line of body.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
  }
  return undefined
}

const HITS = 'http_requests_total{route="/hit"}'
const COUNT = 'http_request_duration_seconds_count'

interface Scrape {
  ms: number
  pid: number
  hits: number
  count: number
  body: string
}

async function scrape(address: string, agent: http.Agent | false = false): Promise<Scrape> {
  const started = Date.now()
  const reply: Reply = await get(`${address}/metrics`, agent, 20_000)
  expect(reply.status, reply.body).toBe(200)
  expect(reply.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
  return {
    ms: Date.now() - started,
    pid: Number(reply.headers['x-pid']),
    hits: sample(reply.body, HITS) ?? 0,
    count: sample(reply.body, COUNT) ?? 0,
    body: reply.body,
  }
}

/** `n` requests to /hit, each on a fresh connection (wherever it lands); the pids that served them. */
async function hits(address: string, n: number): Promise<number[]> {
  const pids: number[] = []
  for (let i = 0; i < n; i++) {
    const reply = await get(`${address}/hit`)
    expect(reply.status).toBe(200)
    pids.push(reply.json<{ pid: number }>().pid)
  }
  return pids
}

/**
 * Keep-alive agents of one socket each, pinned to `count` different workers (known by the pid in the
 * answer): where a new connection lands is up to the cluster's balancing, a kept-alive one stays there.
 */
async function pinned(address: string, count: number): Promise<Pinned[]> {
  const pins = await pinWorkers(address, count)
  expect(pins.length).toBe(count)
  return pins.map(({ agent, pid, reply }) => ({ agent, pid, slot: reply.json<{ slot: number }>().slot, address }))
}

type Pinned = { agent: http.Agent; pid: number; slot: number; address: string }

/** `n` requests to /hit taking turns over pinned connections: every one of those workers serves some. */
async function hitsVia(pins: Pinned[], n: number): Promise<number[]> {
  const pids: number[] = []
  for (let i = 0; i < n; i++) {
    const pin = pins[i % pins.length] as Pinned
    const reply = await get(`${pin.address}/hit`, pin.agent)
    expect(reply.status).toBe(200)
    pids.push(reply.json<{ pid: number }>().pid)
  }
  return pids
}

function expectMonotonic(scrapes: Scrape[]): void {
  for (let i = 1; i < scrapes.length; i++) {
    const [before, after] = [scrapes[i - 1] as Scrape, scrapes[i] as Scrape]
    expect(after.hits, `scrape ${i}: ${before.hits} → ${after.hits}`).toBeGreaterThanOrEqual(before.hits)
    expect(after.count, `scrape ${i}: ${before.count} → ${after.count}`).toBeGreaterThanOrEqual(before.count)
  }
}

describe('one /metrics for the cluster', () => {
  it('N requests over 2 workers: a scrape through either worker reports exactly N', async () => {
    const { address } = await start()
    const [a, b] = await pinned(address, 2)
    const served = await hitsVia([a as Pinned, b as Pinned], 40)
    expect(new Set(served).size).toBe(2) // both workers served some
    const viaA = await scrape(address, a?.agent)
    const viaB = await scrape(address, b?.agent)
    expect([viaA.pid, viaB.pid]).toEqual([a?.pid, b?.pid])
    for (const s of [viaA, viaB]) {
      expect(s.hits).toBe(40)
      expect(s.count).toBe(40)
      expect(sample(s.body, 'app_workers_up')).toBe(2) // a gauge, summed as configured by default
      expect(sample(s.body, 'shoal_metrics_workers{state="answered"}')).toBe(2)
      expect(sample(s.body, 'shoal_metrics_workers{state="timed_out"}')).toBe(0)
      expect(sample(s.body, 'shoal_workers{state="ready"}')).toBe(2)
    }
    a?.agent.destroy()
    b?.agent.destroy()
  })

  it('a runCluster primary without @shoal/metrics: the scraping worker merges, with the same exact totals', async () => {
    const f = new Fixture('metrics-core.mjs', { WORKERS: '2' })
    const started = await f.event('started')
    const address = (started.status as { workers: { address: string }[] }).workers[0]?.address as string
    expect((await f.event('primary-modules')).promClient).toBe(false)
    const [a, b] = await pinned(address, 2)
    const served = await hitsVia([a as Pinned, b as Pinned], 30)
    expect(new Set(served).size).toBe(2)
    const s = await scrape(address, b?.agent)
    expect(s.hits).toBe(30)
    a?.agent.destroy()
    b?.agent.destroy()
    expect(sample(s.body, 'shoal_metrics_workers{state="answered"}')).toBe(2)
  })

  it('Fastify plugin: the same totals', async () => {
    const { address } = await start({ FRAMEWORK: 'fastify' })
    const served = await hitsVia(await pinned(address, 2), 20)
    expect(new Set(served).size).toBe(2)
    const s = await scrape(address)
    expect(s.hits).toBe(20)
    expect(s.count).toBe(20)
  })

  it('perWorker: one series per worker, summing to N', async () => {
    const { address } = await start({ METRICS_OPTS: '{"perWorker":true}' })
    const served = await hitsVia(await pinned(address, 2), 20)
    const { body } = await scrape(address)
    const perWorker = body.split('\n').filter((l) => l.startsWith('http_requests_total{'))
    expect(perWorker).toHaveLength(2)
    expect(perWorker.every((l) => /worker="\d+",slot="[01]"/.test(l))).toBe(true)
    expect(perWorker.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0)).toBe(served.length)
  })
})

describe('counters and histograms never go down', () => {
  it('a worker SIGKILLed: the primary keeps the last values it collected', async () => {
    const { f, address } = await start()
    const scrapes: Scrape[] = []
    const served = await hitsVia(await pinned(address, 2), 20)
    scrapes.push(await scrape(address))
    expect(scrapes[0]?.hits).toBe(20)
    const victim = served[0] as number
    process.kill(victim, 'SIGKILL')
    await f.event('exit', (e) => e.pid === victim)
    await f.event('ready', (e) => !served.includes(e.pid as number))
    scrapes.push(await scrape(address))
    await hits(address, 10)
    scrapes.push(await scrape(address))
    expectMonotonic(scrapes)
    expect(scrapes.map((s) => s.hits)).toEqual([20, 20, 30])
    expect(scrapes.at(-1)?.count).toBe(30)
    expect(sample(scrapes.at(-1)?.body ?? '', 'shoal_worker_restarts_total{reason="crash"}')).toBe(1)
    expect(sample(scrapes.at(-1)?.body ?? '', 'shoal_metrics_retired_workers_total')).toBe(1)
  })

  it('a worker stuck in a busy loop is killed: its last collected values are kept, counted as stuck, not as a crash too', async () => {
    const { f, address } = await start({}, { heartbeat: { intervalMs: 200, maxMissed: 5 } })
    const served = await hitsVia(await pinned(address, 2), 20)
    const before = await scrape(address)
    void get(`${address}/spin?ms=600000`, false, 60_000).catch(() => {})
    await f.waitForOutput(/worker stuck: event loop silent/)
    const stuck = await f.event('exit', (e) => served.includes(e.pid as number))
    await f.event('ready', (e) => !served.includes(e.pid as number))
    const after = await scrape(address)
    expectMonotonic([before, after])
    expect(after.hits).toBe(20)
    expect(stuck).toMatchObject({ signal: 'SIGKILL' })
    expect(sample(after.body, 'shoal_worker_restarts_total{reason="stuck"}')).toBe(1)
    expect(sample(after.body, 'shoal_worker_restarts_total{reason="crash"}')).toBe(0)
  })

  it('a rolling reload under traffic: totals never dip, and after it equal exactly the requests served (final values handed over)', async () => {
    const { f, address } = await start()
    // Before any scrape: only the final values can carry these counts across the reload.
    let served = (await hits(address, 20)).length
    let running = true
    const errors: string[] = []
    const traffic = (async () => {
      while (running) {
        try {
          const reply = await get(`${address}/hit`)
          if (reply.status === 200) served++
          else errors.push(`status ${reply.status}`)
        } catch (err) {
          errors.push((err as Error).message)
        }
      }
    })()
    const scrapes: Scrape[] = []
    const scraping = (async () => {
      while (running) {
        scrapes.push(await scrape(address))
        await sleep(50)
      }
    })()
    const reply = await f.call('reload')
    expect(reply).toMatchObject({ ok: true })
    running = false
    await Promise.all([traffic, scraping])
    const after = await scrape(address)
    expect(errors).toEqual([])
    expectMonotonic([...scrapes, after])
    expect(scrapes.length).toBeGreaterThanOrEqual(3) // scraped while the reload ran
    expect(after.hits).toBe(served)
    expect(after.count).toBe(served)
    expect(sample(after.body, 'shoal_reloads_total{outcome="done"}')).toBe(1)
    expect(sample(after.body, 'shoal_reload_duration_seconds_count')).toBe(1)
    expect(sample(after.body, 'shoal_worker_drain_duration_seconds_count')).toBe(2)
    expect(sample(after.body, 'shoal_metrics_retired_workers_total')).toBe(2)
    expect(sample(after.body, 'shoal_generation')).toBe(1)
  })

  it('a memory-ceiling replacement: the drained worker’s final values are kept, exactly', async () => {
    const { f, address } = await start({}, { maxMemoryMb: 200, heartbeat: { intervalMs: 100, maxMissed: 50 } })
    const served = await hitsVia(await pinned(address, 2), 20)
    const before = await scrape(address)
    await hits(address, 10) // not scraped before the replacement
    const grown = (await get(`${address}/grow?mb=250`)).json<{ pid: number }>().pid
    await f.waitForOutput(/over maxMemoryMb/)
    const exit = await f.event('exit', (e) => e.pid === grown)
    expect(exit).toMatchObject({ code: 0, planned: true })
    await f.event('ready', (e) => !served.includes(e.pid as number))
    const after = await scrape(address)
    expectMonotonic([before, after])
    expect(after.hits).toBe(30)
    expect(after.count).toBe(30)
    expect(sample(after.body, 'shoal_worker_restarts_total{reason="memory"}')).toBe(1)
    expect(after.body).toMatch(/^shoal_worker_resident_memory_bytes\{slot="\d",worker="\d+"\} [1-9]\d*$/m)
  })
})

describe('a slow worker never fails the scrape', () => {
  it('a worker blocked for 3 s: the scrape answers within the timeout plus a margin, marked partial, totals kept', async () => {
    const { address } = await start({ METRICS_OPTS: '{"timeoutMs":500}' })
    const [blocked, other] = await pinned(address, 2)
    await hits(address, 20)
    expect((await scrape(address, other?.agent)).hits).toBe(20) // the primary now holds both workers' values
    const reply = await get(`${address}/block?ms=3000`, blocked?.agent)
    expect(reply.json<{ pid: number }>().pid).toBe(blocked?.pid)
    await sleep(200) // it is inside its busy loop now
    const s = await scrape(address, other?.agent)
    expect(s.pid).toBe(other?.pid)
    // Waited out the 500 ms timeout, and not the ~2.8 s the blocked worker still had to go.
    expect(s.ms).toBeGreaterThanOrEqual(450)
    expect(s.ms).toBeLessThan(500 + 2000)
    expect(sample(s.body, 'shoal_metrics_workers{state="timed_out"}')).toBe(1)
    expect(sample(s.body, 'shoal_metrics_workers{state="answered"}')).toBe(1)
    expect(s.hits).toBe(20) // the blocked worker's last counters stand in
    expect(sample(s.body, 'app_workers_up')).toBe(1) // its gauges do not
    blocked?.agent.destroy()
    other?.agent.destroy()
  })

  it('a worker that never registered metrics answers empty, at once', async () => {
    const { address } = await start({ NO_METRICS_SLOT: '1' })
    const agents = await pinned(address, 2)
    const withMetrics = agents.find((a) => a.slot === 0)
    const served = await hits(address, 20) // slot 1 answers /hit from the common route, uncounted
    const s = await scrape(address, withMetrics?.agent)
    expect(s.ms).toBeLessThan(1000) // never waits out the 1500 ms timeout
    expect(sample(s.body, 'shoal_metrics_workers{state="answered"}')).toBe(2)
    expect(sample(s.body, 'shoal_metrics_workers{state="timed_out"}')).toBe(0)
    expect(s.hits).toBe(served.filter((pid) => pid === withMetrics?.pid).length)
    for (const a of agents) a.agent.destroy()
  })
})

describe("the primary's own metrics port (primaryMetricsServer)", () => {
  it('serves the same totals; a blocked worker never holds it up; it closes with the cluster', async () => {
    const { f, address } = await start({ PRIMARY_METRICS: '1', METRICS_OPTS: '{"timeoutMs":500}' })
    const { port } = await f.event('metrics-port')
    const primaryUrl = `http://127.0.0.1:${port}`
    await hits(address, 20)
    const first = await scrape(primaryUrl)
    expect(first.hits).toBe(20)
    expect(first.pid).toBeNaN() // no worker took it: the primary answered
    expect(sample(first.body, 'shoal_metrics_workers{state="answered"}')).toBe(2)
    expect((await get(`${primaryUrl}/other`)).status).toBe(404)
    await get(`${address}/block?ms=3000`)
    await sleep(200)
    const blocked = await scrape(primaryUrl)
    expect(blocked.ms).toBeLessThan(500 + 2000)
    expect(sample(blocked.body, 'shoal_metrics_workers{state="timed_out"}')).toBe(1)
    expect(blocked.hits).toBe(20)
    f.signal('SIGTERM')
    expect((await f.waitForExit(30_000)).code).toBe(0)
  })
})

describe('without a primary', () => {
  it('workers: 0 — /metrics is this process’s registry', async () => {
    const { address } = await start({ WORKERS: '0' })
    await hits(address, 5)
    const s = await scrape(address)
    expect(s.hits).toBe(5)
    expect(s.body).not.toMatch(/^shoal_/m)
  })
})

function run(cmd: string, args: string[], input: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') reject(err)
      else resolve({ code: child.exitCode ?? 1, output: stdout + stderr })
    })
    child.stdin?.end(input)
  })
}

function which(bin: string): Promise<boolean> {
  return new Promise((resolve) => execFile('sh', ['-c', `command -v ${bin}`], (err) => resolve(!err)))
}

// promtool comes with the Debian package `prometheus` (.ci/run installs it): in CI its absence fails.
const promtool = await which('promtool')
const prometheus = await which('prometheus')
if (!promtool && !process.env.CI)
  console.warn('metrics.test.ts: promtool checks skipped: `promtool` is not installed (apt-get install prometheus)')

describe.skipIf(!promtool && !process.env.CI)('Prometheus accepts the output', () => {
  it('passes `promtool check metrics` after a reload (retired values, histograms, default metrics, shoal’s own)', async () => {
    expect(promtool, 'promtool is required in CI (apt-get install prometheus)').toBe(true)
    const { f, address } = await start({ DEFAULT_METRICS: '1' })
    await hits(address, 10)
    await f.call('reload')
    const { body } = await scrape(address)
    expect(body).toMatch(/^shoal_worker_drain_duration_seconds_bucket\{le="\+Inf"\} 2$/m)
    expect(body).toMatch(/^nodejs_heap_size_used_bytes \d+/m)
    const checked = await run('promtool', ['check', 'metrics'], body)
    // Exit 1 is a parse error. Exit 3 is lint only, and the one lint prom-client's own default metrics
    // have (nodejs_active_handles_total and co. are gauges named like counters) is theirs, not ours.
    const problems = checked.output.split('\n').filter((line) => line.trim() !== '')
    const ours = problems.filter((line) => !/^nodejs_active_\w+_total non-counter metrics should not have "_total" suffix$/.test(line))
    expect(ours, checked.output).toEqual([])
    expect([0, 3], checked.output).toContain(checked.code)
  })

  it.skipIf(!prometheus)('a real Prometheus server scrapes it: up == 1 and the cluster’s sum', async () => {
    const { address } = await start()
    await hits(address, 12)
    const port = await new Promise<number>((resolve) => {
      const server = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo
        server.close(() => resolve(port))
      })
    })
    const dir = mkdtempSync(join(tmpdir(), 'shoal-prom-'))
    const target = new URL(address).host
    writeFileSync(
      join(dir, 'prometheus.yml'),
      `global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: shoal\n    static_configs:\n      - targets: ['${target}']\n`,
    )
    const server = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: 'ignore' },
    )
    try {
      const query = async (q: string) => {
        const reply = await get(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`)
        const result = (reply.json<{ data?: { result?: { value: [number, string] }[] } }>().data?.result ?? [])[0]
        return result ? Number(result.value[1]) : undefined
      }
      let up: number | undefined
      let total: number | undefined
      for (let i = 0; i < 60 && (up !== 1 || total !== 12); i++) {
        await sleep(500)
        up = await query('up{job="shoal"}').catch(() => undefined)
        total = await query('sum(http_requests_total)').catch(() => undefined)
      }
      expect(up).toBe(1)
      expect(total).toBe(12)
    } finally {
      if (server.pid !== undefined) process.kill(server.pid, 'SIGKILL')
      await new Promise((resolve) => (server.exitCode === null ? server.once('exit', resolve) : resolve(undefined)))
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
