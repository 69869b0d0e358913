// Section 9: cluster-wide metrics. The same workers (~1,000 prom-client series each) are scraped two
// ways in the same run: shoal (`GET /metrics` on the app's port, answered by a worker that asks the
// primary, @shoal/metrics) and prom-client's documented cluster setup (`AggregatorRegistry
// .clusterMetrics()` behind a second server in the primary). Latency per scrape (sequential, one
// keep-alive connection each) and the primary's CPU time per scrape (process.cpuUsage of the
// primary, read over its hook port before and after the batch). Then one worker's event loop is
// blocked and each tool is scraped once.
import http from 'node:http'
import { fmt, fmtInt, isMain, percentile, QUICK, sleep, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return { sizes: [2, 8, 32], scrapes: quick ? 10 : 40, warmup: quick ? 3 : 10, blockedMs: [3000, 6000], shoalTimeoutMs: 1500 }
}

function get(url, agent) {
  const started = performance.now()
  return new Promise((resolve) => {
    const req = http.get(url, { agent, timeout: 30_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c) => {
        body += c
      })
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, ms: performance.now() - started }))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', (err) => resolve({ status: 0, body: err.message, headers: {}, ms: performance.now() - started }))
  })
}

const cpuMicros = async (hook, agent) => JSON.parse((await get(`${hook}/cpu`, agent)).body).micros
const series = (body) => body.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length

/**
 * Scrapes every tool in turn (A, B, C, A, B, C, ...) so that drift, JIT warm-up of the shared
 * prom-client code and the machine's other work hit them alike; the primary's CPU time is read
 * around each scrape and summed per tool.
 */
async function measureInterleaved(tools, hook, hookAgent, s) {
  for (let i = 0; i < s.warmup; i++) for (const t of tools) await get(t.url, t.agent)
  const out = tools.map(() => ({ ms: [], failed: 0, cpu: 0, last: '' }))
  for (let i = 0; i < s.scrapes; i++) {
    for (const [k, t] of tools.entries()) {
      const before = await cpuMicros(hook, hookAgent)
      const r = await get(t.url, t.agent)
      out[k].cpu += (await cpuMicros(hook, hookAgent)) - before
      if (r.status === 200) out[k].ms.push(r.ms)
      else out[k].failed++
      out[k].last = r.body
    }
  }
  return out.map((o) => ({
    p50: percentile(o.ms, 50),
    p99: percentile(o.ms, 99),
    failed: o.failed,
    cpuMicrosPerScrape: o.cpu / s.scrapes,
    series: series(o.last),
  }))
}

/**
 * Blocks one worker for `blockedMs` (not the one `agent`'s connection is on, so the scrape is
 * answered by a worker that runs), scrapes once, and waits until the worker is back.
 */
async function blockedScrape(url, hook, agent, hookAgent, app, blockedMs) {
  const notPid = (await get(`${app}/`, agent)).headers['x-pid']
  await get(`${hook}/block?ms=${blockedMs}&not=${notPid}`, hookAgent)
  await sleep(100) // the worker is inside its busy loop
  const r = await get(url, agent)
  await sleep(blockedMs + 500)
  const timedOut = /^shoal_metrics_workers\{state="timed_out"\} (\d+)$/m.exec(r.body)?.[1]
  return {
    status: r.status,
    ms: r.ms,
    timedOut: timedOut === undefined ? undefined : Number(timedOut),
    error: r.status === 200 ? '' : r.body.slice(0, 80),
  }
}

export async function run(log = console.error) {
  const s = settings()
  const results = []
  for (const workers of s.sizes) {
    const server = await startServer(new URL('metrics-primary.mjs', apps).pathname, {
      env: { WORKERS: String(workers), SHOAL_METRICS_TIMEOUT_MS: String(s.shoalTimeoutMs) },
      timeoutMs: 240_000,
    })
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const hookAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const { hook } = server.ready
      const shoalUrl = `${server.address}/metrics`
      const promUrl = `${hook}/prom-client`
      const primaryAgent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const [shoal, shoalPrimary, promClient] = await measureInterleaved(
        [
          { url: shoalUrl, agent },
          { url: `${server.ready.primaryPort}/metrics`, agent: primaryAgent },
          { url: promUrl, agent: hookAgent },
        ],
        hook,
        hookAgent,
        s,
      )
      primaryAgent.destroy()
      const blocked = []
      for (const ms of s.blockedMs) {
        blocked.push({
          blockedMs: ms,
          shoal: await blockedScrape(shoalUrl, hook, agent, hookAgent, server.address, ms),
          promClient: await blockedScrape(promUrl, hook, hookAgent, hookAgent, server.address, ms),
        })
      }
      const out = { workers, shoal, shoalPrimary, promClient, blocked }
      log(
        `[metrics] ${workers} workers: shoal p50 ${fmt(shoal.p50)} ms p99 ${fmt(shoal.p99)} ms cpu ${fmtInt(shoal.cpuMicrosPerScrape)} µs; ` +
          `shoal primary port p50 ${fmt(shoalPrimary.p50)} ms p99 ${fmt(shoalPrimary.p99)} ms; ` +
          `prom-client p50 ${fmt(promClient.p50)} ms p99 ${fmt(promClient.p99)} ms cpu ${fmtInt(promClient.cpuMicrosPerScrape)} µs; ` +
          blocked
            .map(
              (b) =>
                `blocked ${b.blockedMs} ms: shoal ${b.shoal.status} in ${fmtInt(b.shoal.ms)} ms, prom-client ${b.promClient.status} in ${fmtInt(b.promClient.ms)} ms`,
            )
            .join('; '),
      )
      results.push(out)
    } finally {
      agent.destroy()
      hookAgent.destroy()
      server.stop()
    }
  }
  return { settings: s, results }
}

const outcome = (x) =>
  x.status === 200
    ? `200 in ${fmtInt(x.ms)} ms${x.timedOut === undefined ? '' : ` (timed_out=${x.timedOut})`}`
    : `failed (${x.status}) after ${fmtInt(x.ms)} ms: ${x.error}`

export function toMarkdown({ settings: s, results }) {
  const rows = results.flatMap((r) =>
    [
      ['shoal (`/metrics` on the app port)', r.shoal],
      ["shoal (`primaryMetricsServer`, the primary's own port)", r.shoalPrimary],
      ['prom-client `AggregatorRegistry.clusterMetrics()`', r.promClient],
    ].map(([label, x]) => [
      fmtInt(r.workers),
      label,
      fmtInt(x.series),
      fmt(x.p50),
      fmt(x.p99),
      fmtInt(x.cpuMicrosPerScrape),
      fmtInt(x.failed),
    ]),
  )
  const blockedRows = results.flatMap((r) =>
    r.blocked.map((b) => [fmtInt(r.workers), `${fmtInt(b.blockedMs)} ms`, outcome(b.shoal), outcome(b.promClient)]),
  )
  return [
    '## 9. Metrics: one scrape for the whole cluster',
    '',
    `N workers, each with ~1,000 prom-client series (500 counter, 280 histogram, 220 gauge samples). The same workers are scraped ` +
      `${s.scrapes} times by each tool, in turn (one scrape of each, then the next round; after ${s.warmup} unmeasured rounds), one ` +
      'keep-alive connection each: **shoal on the app port** (`GET /metrics` answered by a worker, which asks the primary; the ' +
      "primary collects every worker over IPC and, with `@shoal/metrics` loaded there, merges with prom-client's " +
      "`AggregatorRegistry.aggregate` and hands the worker the text), **shoal on the primary's port** (`primaryMetricsServer`, " +
      'the same collect without the worker hop) and **prom-client** (`AggregatorRegistry.clusterMetrics()` in the primary, served ' +
      'by a second server there, as its docs show). **Primary CPU µs / scrape**: `process.cpuUsage()` of the primary read before ' +
      'and after each scrape, summed per tool. Series = samples in the merged output (shoal adds its own metrics: about 36 series ' +
      'plus 2 per worker).',
    '',
    table(['workers', 'scraped by', 'series', 'p50 ms', 'p99 ms', 'primary CPU µs / scrape', 'failed'], rows),
    '',
    `One worker's event loop blocked (busy loop) just before a scrape; shoal's per-worker timeout is ${fmtInt(s.shoalTimeoutMs)} ms, ` +
      "prom-client's is a fixed 5,000 ms for the whole scrape.",
    '',
    table(['workers', 'blocked for', 'shoal', 'prom-client'], blockedRows),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
