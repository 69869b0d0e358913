// Section 2: a rolling reload under keep-alive load. 2 workers, CPU-bound route, a fixed time of
// load; SIGUSR2 to the primary a few seconds in. Counts failed requests, throughput per second
// around the reload, and the reload's duration as the primary reports it. The same against a
// hand-written node:cluster primary that reloads the naive way (disconnect, then fork).
// Each server is measured twice: with autocannon, and with a fetch-based client as a cross-check,
// because autocannon ignores `Connection: close` (see the notes in toMarkdown).
import { fetchLoad, fmt, fmtInt, freePort, isMain, load, median, QUICK, ratio, sleep, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return {
    workers: 2,
    connections: 50,
    warmupS: 1,
    durationS: quick ? 6 : 10,
    triggerAtS: 2,
    route: '/cpu',
    // After the load stops, how long to wait for a reload that has not reported done yet.
    settleMs: quick ? 5000 : 10_000,
  }
}

const TARGETS = [
  { name: 'shoal-express', label: 'shoal (express)', script: 'shoal.mjs', framework: 'express' },
  { name: 'shoal-fastify', label: 'shoal (fastify)', script: 'shoal.mjs', framework: 'fastify' },
  { name: 'seed-express', label: 'node:cluster by hand, naive reload (express)', script: 'seed.mjs', framework: 'express' },
]

function hasClose(headers) {
  for (let i = 0; i < headers.length; i += 2) {
    if (String(headers[i]).toLowerCase() === 'connection' && String(headers[i + 1]).toLowerCase() === 'close') return true
  }
  return false
}

/** Drives load with autocannon; `record(kind)` is called per outcome. */
async function autocannonPass(url, s, record) {
  let closeAnswers = 0
  const result = await load(url, {
    connections: s.connections,
    durationS: s.durationS,
    setupClient(client) {
      client.on('headers', (h) => {
        if (hasClose(h.headers)) closeAnswers++
      })
    },
    onStart(instance) {
      instance.on('response', (_client, statusCode) => record(statusCode >= 200 && statusCode < 300 ? 'ok' : 'non2xx'))
      instance.on('reqError', () => record('errors'))
    },
  })
  return {
    requests: result.requests.total,
    rps: result.requests.total / result.duration,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    // With one request in flight per connection, sent − answered − errors is `connections` when nothing vanished.
    unanswered: result.requests.sent - result.requests.total - result.errors - s.connections,
    closeAnswers,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count])),
  }
}

async function fetchPass(url, s, record) {
  const statusCodes = {}
  const result = await fetchLoad(url, {
    connections: s.connections,
    durationS: s.durationS,
    onOutcome(status) {
      if (status === undefined) return record('errors')
      statusCodes[status] = (statusCodes[status] ?? 0) + 1
      record(status >= 200 && status < 300 ? 'ok' : 'non2xx')
    },
  })
  return {
    requests: result.requests,
    rps: result.requests / result.duration,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.errorCodes.TimeoutError ?? 0,
    errorCodes: result.errorCodes,
    statusCodes,
  }
}

async function measure(target, client, s, log) {
  const port = await freePort()
  const server = await startServer(new URL(target.script, apps).pathname, {
    env: { FRAMEWORK: target.framework, WORKERS: String(s.workers), PORT: String(port) },
  })
  try {
    const url = server.address + s.route
    await load(url, { connections: s.connections, durationS: s.warmupS })
    const buckets = Array.from({ length: s.durationS }, () => ({ ok: 0, non2xx: 0, errors: 0 }))
    const t0 = performance.now()
    const record = (kind) => {
      buckets[Math.min(buckets.length - 1, Math.floor((performance.now() - t0) / 1000))][kind]++
    }
    const running = client === 'autocannon' ? autocannonPass(url, s, record) : fetchPass(url, s, record)
    await sleep(s.triggerAtS * 1000)
    const triggeredAt = performance.now()
    server.signal('SIGUSR2')
    const counts = await running
    const loadEndedAt = performance.now()
    const isEnd = (m) => m.ev === 'reload-done' || m.ev === 'reload-failed'
    const end = await server.waitFor(isEnd, s.settleMs, 'reload-done').catch(() => undefined)
    const start = server.messages.find((m) => m.ev === 'reload-start')
    // All replacements listening: the seed primary reports it; for shoal, the last 'ready' after the reload started.
    const readies = server.messages.filter((m) => m.ev === 'ready' && start !== undefined && m.receivedAt >= start.receivedAt)
    const listening = server.messages.find((m) => m.ev === 'reload-listening') ?? readies.at(-1)
    const rel = (t) => (t === undefined ? undefined : (t - t0) / 1000)
    const out = {
      ...target,
      client,
      buckets,
      ...counts,
      failed: counts.non2xx + counts.errors,
      triggeredAtS: rel(triggeredAt),
      startAtS: rel(start?.receivedAt),
      endAtS: rel(end?.receivedAt),
      loadEndedAtS: rel(loadEndedAt),
      outcome: end ? end.ev : 'not finished',
      durationMs: end?.durationMs,
      listeningAtS: listening ? rel(listening.receivedAt) : undefined,
      exits: server.messages
        .filter((m) => m.ev === 'exit')
        .map((m) => ({ atS: rel(m.receivedAt), planned: m.planned, code: m.code, signal: m.signal })),
    }
    Object.assign(out, dip(out))
    log(
      `[reload] ${target.label} / ${client}: failed ${out.failed} (non2xx ${out.non2xx}, errors ${out.errors}), ` +
        `${out.outcome} ${out.durationMs ?? '-'} ms, dip ${fmt(out.dip)}`,
    )
    return out
  } finally {
    server.stop()
  }
}

/** Throughput dip: min 1-second bucket while the reload ran / median bucket before it started. */
function dip({ buckets, startAtS, endAtS, triggeredAtS, loadEndedAtS }) {
  const from = startAtS ?? triggeredAtS
  const to = Math.min(endAtS ?? loadEndedAtS, buckets.length)
  const before = []
  const during = []
  buckets.forEach((b, i) => {
    if (i + 1 <= from) before.push(b.ok)
    else if (i < to) during.push(b.ok)
  })
  const beforeMedian = median(before)
  const duringMin = during.length ? Math.min(...during) : Number.NaN
  return { beforeMedian, duringMin, dip: duringMin / beforeMedian }
}

export async function run(log = console.error) {
  const s = settings()
  const results = []
  for (const client of ['autocannon', 'fetch']) {
    for (const target of TARGETS) results.push(await measure(target, client, s, log))
  }
  return { settings: s, results }
}

function inReload(r, i) {
  const from = r.startAtS ?? r.triggeredAtS
  const to = r.endAtS ?? r.loadEndedAtS
  return i + 1 > from && i < to
}

const codesOf = (counts) =>
  Object.entries(counts ?? {})
    .map(([code, count]) => `${code}: ${fmtInt(count)}`)
    .join(', ')

export function toMarkdown({ settings: s, results }) {
  const ac = results.filter((r) => r.client === 'autocannon')
  const fe = results.filter((r) => r.client === 'fetch')
  const reloadCell = (r) => (r.outcome === 'reload-done' ? fmtInt(r.durationMs) : r.outcome)
  const dipCells = (r) => [`${fmtInt(r.beforeMedian)} → ${fmtInt(r.duringMin)}`, ratio(r.duringMin, r.beforeMedian)]
  const summary = ac.map((r) => [
    r.label,
    fmtInt(r.requests),
    fmtInt(r.rps),
    `**${fmtInt(r.failed)}**`,
    fmtInt(r.non2xx),
    fmtInt(r.errors),
    fmtInt(r.timeouts),
    fmtInt(r.closeAnswers),
    fmtInt(r.unanswered),
    reloadCell(r),
    ...dipCells(r),
  ])
  const cross = fe.map((r) => [
    r.label,
    fmtInt(r.requests),
    fmtInt(r.rps),
    `**${fmtInt(r.failed)}**`,
    fmtInt(r.non2xx),
    fmtInt(r.errors),
    codesOf(r.errorCodes) || '–',
    reloadCell(r),
    ...dipCells(r),
  ])
  const timeline = Array.from({ length: s.durationS }, (_, i) => [
    `${i}–${i + 1} s`,
    ...results.map((r) => {
      const b = r.buckets[i]
      const failed = b.non2xx + b.errors
      return `${fmtInt(b.ok)}${failed ? ` (+${fmtInt(failed)} failed)` : ''}${inReload(r, i) ? ' ⟳' : ''}`
    }),
  ])
  const events = results.map((r) => [
    `${r.label} / ${r.client}`,
    fmt(r.triggeredAtS, 2),
    fmt(r.startAtS, 2),
    r.listeningAtS !== undefined ? fmt(r.listeningAtS, 2) : '',
    r.endAtS !== undefined ? fmt(r.endAtS, 2) : r.outcome,
    fmt(r.loadEndedAtS, 2),
    r.exits.map((e) => `${fmt(e.atS, 2)}${e.planned ? '' : ' (unplanned)'} [${e.signal ?? e.code}]`).join(', '),
    codesOf(r.statusCodes),
  ])
  return [
    '## 2. Rolling reload under load',
    '',
    `${s.workers} workers, route \`${s.route}\`, ${s.connections} keep-alive connections for ${s.durationS} s ` +
      `(after a ${s.warmupS} s warmup); SIGUSR2 to the primary ${s.triggerAtS} s in. ` +
      "Reload duration: shoal's `reload-done` event (`durationMs`); for the hand-written primary, from SIGUSR2 until every " +
      'replacement listens and every old worker has exited. Dip = lowest 1-second bucket of 2xx responses while the reload ran / ' +
      'median bucket before it.',
    '',
    '### With autocannon',
    '',
    '**failed** = non-2xx + errors as autocannon counts them (it counts a timeout as an error too). ' +
      '**close answers** = responses that carried `Connection: close` (a draining worker sends it). autocannon does not honor it: ' +
      'it writes its next request on that socket anyway, and that request is never answered nor counted as an error. ' +
      `**unanswered** = requests sent − responses − errors − ${s.connections} (one per connection is in flight when the run stops), ` +
      'so requests that vanished silently; expect about one per close answer. autocannon reconnects at once after a refused ' +
      'or reset connection, so while nothing listens each connection counts many errors: errors count failed attempts.',
    '',
    table(
      [
        'server',
        'requests',
        'req/s',
        'failed',
        'non-2xx',
        'errors',
        'timeouts',
        'close answers',
        'unanswered',
        'reload ms',
        '2xx/s before → min during',
        'dip',
      ],
      summary,
    ),
    '',
    '### Cross-check with a client that honors `Connection: close`',
    '',
    `${s.connections} concurrent loops of Node's \`fetch\` (undici, keep-alive), same timing. Every rejected fetch counts as an error; ` +
      'a loop sends its next request at once, so errors count failed attempts too.',
    '',
    table(
      ['server', 'requests', 'req/s', 'failed', 'non-2xx', 'errors', 'error causes', 'reload ms', '2xx/s before → min during', 'dip'],
      cross,
    ),
    '',
    '### Per second',
    '',
    '2xx responses per second (⟳ = reload in progress during that second):',
    '',
    table(['second', ...results.map((r) => `${r.label} / ${r.client}`)], timeline),
    '',
    'When things happened (seconds since the measured load started):',
    '',
    table(
      [
        'server / client',
        'SIGUSR2 sent',
        'reload started',
        'all replacements listening',
        'reload done',
        'load stopped',
        'worker exits [code/signal]',
        'status codes',
      ],
      events,
    ),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
