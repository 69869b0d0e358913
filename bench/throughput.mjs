// Section 1: requests per second, one plain process vs a shoal cluster vs a hand-written node:cluster
// primary, for express and fastify, on a hello-world route and a CPU-bound route; then the adapter's
// per-request overhead in one process (adapter on vs off, interleaved so drift does not bias the ratio).
import { availableParallelism } from 'node:os'
import { CPU_FIB, failures, fmt, fmtInt, isMain, load, measureCpuRouteMs, median, QUICK, ratio, rps, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)
const FRAMEWORKS = ['express', 'fastify']
const ROUTES = [
  { name: 'hello', path: '/' },
  { name: 'cpu', path: '/cpu' },
]
/** Target for the adapter overhead ratio (adapter on / off). */
export const ADAPTER_GOAL = 0.97

export function settings(quick = QUICK) {
  return {
    connections: 50,
    warmupS: 1,
    durationS: quick ? 2 : 5,
    overheadRounds: quick ? 2 : 9,
    overheadDurationS: quick ? 2 : 3,
    workers: availableParallelism(),
  }
}

function modes(workers) {
  return [
    { name: 'plain', label: 'one process, no shoal', script: 'single.mjs', env: { ADAPTER: '0' } },
    { name: 'shoal', label: `shoal, ${workers} workers (clusteredListen)`, script: 'shoal.mjs', env: { WORKERS: String(workers) } },
    { name: 'seed', label: `node:cluster by hand, ${workers} workers`, script: 'seed.mjs', env: { WORKERS: String(workers) } },
  ]
}

function summarize(result) {
  return {
    rps: rps(result),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    failed: failures(result),
    requests: result.requests.total,
  }
}

export async function run(log = console.error) {
  const s = settings()
  const cpuRouteMs = measureCpuRouteMs()
  const cases = []
  for (const framework of FRAMEWORKS) {
    for (const mode of modes(s.workers)) {
      const server = await startServer(new URL(mode.script, apps).pathname, { env: { FRAMEWORK: framework, ...mode.env } })
      try {
        for (const route of ROUTES) {
          const url = server.address + route.path
          await load(url, { connections: s.connections, durationS: s.warmupS })
          const result = summarize(await load(url, { connections: s.connections, durationS: s.durationS }))
          log(`[throughput] ${framework} ${route.name} ${mode.name}: ${fmtInt(result.rps)} req/s, failed ${result.failed}`)
          cases.push({ framework, route: route.name, mode: mode.name, label: mode.label, ...result })
        }
      } finally {
        server.stop()
      }
    }
  }

  const overhead = []
  for (const framework of FRAMEWORKS) {
    const on = await startServer(new URL('single.mjs', apps).pathname, { env: { FRAMEWORK: framework, ADAPTER: '1' } })
    const off = await startServer(new URL('single.mjs', apps).pathname, { env: { FRAMEWORK: framework, ADAPTER: '0' } }).catch((err) => {
      on.stop()
      throw err
    })
    try {
      const runs = { on: [], off: [] }
      const once = async (server, durationS) => rps(await load(`${server.address}/`, { connections: s.connections, durationS }))
      await once(on, s.warmupS)
      await once(off, s.warmupS)
      for (let round = 0; round < s.overheadRounds; round++) {
        // ABBA order: on,off then off,on, so a steady drift hits both sides alike.
        const order = round % 2 === 0 ? ['on', 'off'] : ['off', 'on']
        for (const which of order) runs[which].push(await once(which === 'on' ? on : off, s.overheadDurationS))
      }
      const result = { framework, on: runs.on, off: runs.off, onMedian: median(runs.on), offMedian: median(runs.off) }
      log(`[throughput] adapter overhead ${framework}: on ${fmtInt(result.onMedian)} / off ${fmtInt(result.offMedian)} req/s`)
      overhead.push(result)
    } finally {
      on.stop()
      off.stop()
    }
  }
  return { settings: s, cpuRouteMs, cpuFib: CPU_FIB, cases, overhead }
}

export function toMarkdown({ settings: s, cpuRouteMs, cpuFib, cases, overhead }) {
  const find = (framework, route, mode) => cases.find((c) => c.framework === framework && c.route === route && c.mode === mode)
  const rows = cases.map((c) => {
    const plain = find(c.framework, c.route, 'plain')
    const seed = find(c.framework, c.route, 'seed')
    return [
      c.framework,
      c.route,
      c.label,
      fmtInt(c.rps),
      c.mode === 'plain' ? '1.00×' : ratio(c.rps, plain?.rps),
      c.mode === 'shoal' ? ratio(c.rps, seed?.rps) : '',
      fmt(c.p50Ms, 0),
      fmt(c.p99Ms, 0),
      fmtInt(c.failed),
    ]
  })
  const overheadRows = overhead.map((o) => [
    o.framework,
    o.on.map((v) => fmtInt(v)).join(', '),
    o.off.map((v) => fmtInt(v)).join(', '),
    fmtInt(o.onMedian),
    fmtInt(o.offMedian),
    ratio(o.onMedian, o.offMedian, 3),
    o.onMedian / o.offMedian >= ADAPTER_GOAL ? 'yes' : '**no**',
  ])
  return [
    '## 1. Throughput',
    '',
    `autocannon, ${s.connections} keep-alive connections, ${s.warmupS} s warmup then ${s.durationS} s per case, 127.0.0.1. ` +
      `Routes: \`hello\` answers \`{"hello":"world"}\`; \`cpu\` computes fib(${cpuFib}) per request ` +
      `(${fmt(cpuRouteMs, 2)} ms per call, measured in the bench process before the run). ` +
      `Clusters run ${s.workers} workers (\`os.availableParallelism()\`). The load generator runs on the same machine and ` +
      'competes with the workers for the same cores, so a cluster cannot reach N× here.',
    '',
    table(['framework', 'route', 'server', 'req/s', 'vs plain', 'shoal vs node:cluster', 'p50 ms', 'p99 ms', 'failed'], rows),
    '',
    '### Adapter overhead (one process)',
    '',
    `hello route in one process. **on**: \`clustered()\` / \`clusterPlugin\` registered and served by \`clusteredListen(..., { workers: 0 })\` ` +
      '(the per-request path of a shoal worker: adapter plus drain tracking). **off**: the bare framework on a plain listen. ' +
      `${s.overheadRounds} rounds of ${s.overheadDurationS} s each side after a ${s.warmupS} s warmup, interleaved on/off then off/on; ratio of medians ` +
      `(goal ≥ ${ADAPTER_GOAL}×).`,
    '',
    table(['framework', 'on, req/s per run', 'off, req/s per run', 'on median', 'off median', 'on / off', 'meets goal'], overheadRows),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
