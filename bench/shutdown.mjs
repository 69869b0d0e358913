// Section 6: shutting a cluster down with SIGTERM to its primary. (a) idle: time until the primary
// process exits, and its exit code, a few times. (b) with requests in flight: concurrent requests to
// a slow route, SIGTERM shortly after they started; how many were answered, and the same timing.
// Times and codes come from the primary's 'exit' event in this process.
import { childPids, fmt, fmtInt, isAlive, isMain, median, QUICK, sleep, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return {
    workers: 2,
    framework: 'express',
    idleRuns: 3,
    inFlight: 20,
    slowMs: 1000,
    sigtermAfterMs: 200,
    // How long to wait for the primary to exit after SIGTERM before giving up (shoal's default drain
    // deadline is 5 s, plus a 2 s kill margin).
    exitTimeoutMs: quick ? 10_000 : 15_000,
    requestTimeoutMs: 10_000,
  }
}

const TARGETS = [
  { name: 'shoal-express', label: 'shoal (express)', script: 'shoal.mjs', graceful: true },
  // seed.mjs installs no SIGTERM handler: SIGTERM just kills its primary. Nothing to measure as a shutdown.
  { name: 'seed-express', label: 'node:cluster by hand (express)', script: 'seed.mjs', graceful: false },
]
export const NOT_GRACEFUL = 'n/a (the seed has no graceful shutdown)'

function start(target, s) {
  return startServer(new URL(target.script, apps).pathname, { env: { FRAMEWORK: s.framework, WORKERS: String(s.workers) } })
}

/** SIGTERM to the primary; resolves when it exited (or the timeout passed), with what was left running. */
async function terminate(server, s) {
  const workers = childPids(server.pid)
  const sentAt = performance.now()
  server.signal('SIGTERM')
  const exit = await server.waitExit(s.exitTimeoutMs)
  return {
    exited: exit !== undefined,
    exitMs: exit ? exit.at - sentAt : undefined,
    code: exit?.code,
    signal: exit?.signal,
    workersBefore: workers.length,
    workersLeft: workers.filter(isAlive).length,
  }
}

async function idleRun(target, s) {
  const server = await start(target, s)
  try {
    return await terminate(server, s)
  } finally {
    server.stop()
  }
}

async function drainRun(target, s) {
  const server = await start(target, s)
  try {
    const url = `${server.address}/slow?ms=${s.slowMs}`
    const causes = {}
    const one = async () => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(s.requestTimeoutMs) })
        await res.arrayBuffer()
        return res.status
      } catch (err) {
        const code = err.cause?.code ?? err.code ?? err.name
        causes[code] = (causes[code] ?? 0) + 1
        return undefined
      }
    }
    const requests = Array.from({ length: s.inFlight }, one)
    await sleep(s.sigtermAfterMs)
    const stopped = await terminate(server, s)
    const statuses = await Promise.all(requests)
    const ok = statuses.filter((status) => status === 200).length
    return { ...stopped, ok, failed: statuses.length - ok, causes }
  } finally {
    server.stop()
  }
}

/** A run's exit code (or signal), from the 'exit' event. */
export const exitText = (r) => (r.exited ? String(r.code ?? r.signal) : 'still running')

export async function run(log = console.error) {
  const s = settings()
  const results = []
  for (const target of TARGETS) {
    if (!target.graceful) {
      log(`[shutdown] ${target.label}: ${NOT_GRACEFUL}`)
      results.push({ ...target })
      continue
    }
    const idle = []
    for (let i = 0; i < s.idleRuns; i++) {
      const r = await idleRun(target, s)
      log(`[shutdown] ${target.label} idle #${i + 1}: ${r.exited ? `${fmt(r.exitMs, 0)} ms` : 'did not exit'}, exit ${exitText(r)}`)
      idle.push(r)
    }
    const drain = await drainRun(target, s)
    log(
      `[shutdown] ${target.label} drain: ${drain.ok}/${s.inFlight} got 200, ${drain.failed} failed, ` +
        `${drain.exited ? `${fmt(drain.exitMs, 0)} ms` : 'did not exit'}, exit ${exitText(drain)}`,
    )
    results.push({ ...target, idle, idleMedianMs: median(idle.filter((r) => r.exited).map((r) => r.exitMs)), drain })
  }
  return { settings: s, results }
}

export function toMarkdown({ settings: s, results }) {
  const ms = (r) => (r.exited ? fmt(r.exitMs, 0) : `did not exit within ${fmtInt(s.exitTimeoutMs)} ms`)
  const idleRows = results.map((r) =>
    r.graceful
      ? [
          r.label,
          `**${fmt(r.idleMedianMs, 0)}**`,
          r.idle.map(ms).join(', '),
          r.idle.map(exitText).join(', '),
          r.idle.map((x) => `${fmtInt(x.workersLeft)} / ${fmtInt(x.workersBefore)}`).join(', '),
        ]
      : [r.label, NOT_GRACEFUL, '', '', ''],
  )
  const drainRows = results.map((r) => {
    if (!r.graceful) return [r.label, NOT_GRACEFUL, '', '', '', '']
    const d = r.drain
    const causes = Object.entries(d.causes)
      .map(([code, count]) => `${code}: ${fmtInt(count)}`)
      .join(', ')
    return [
      r.label,
      `**${fmtInt(d.ok)} / ${fmtInt(s.inFlight)}**`,
      `${fmtInt(d.failed)}${causes ? ` (${causes})` : ''}`,
      ms(d),
      exitText(d),
      `${fmtInt(d.workersLeft)} / ${fmtInt(d.workersBefore)}`,
    ]
  })
  return [
    '## 6. Shutdown',
    '',
    `${s.workers} workers, ${s.framework}. SIGTERM to the primary; **ms to exit** = from sending SIGTERM until this process saw ` +
      "the primary's 'exit' event; **exit** = its exit code (or signal). **workers left** = of the primary's children just " +
      'before SIGTERM, how many were still running once it had exited. The hand-written primary (`apps/seed.mjs`) installs no ' +
      'SIGTERM handler, so SIGTERM simply kills it: there is no graceful shutdown to measure.',
    '',
    `### Idle (${s.idleRuns} runs, a fresh cluster each)`,
    '',
    table(['server', 'median ms to exit', 'ms to exit per run', 'exit per run', 'workers left per run'], idleRows),
    '',
    '### With requests in flight',
    '',
    `${s.inFlight} concurrent requests (Node's \`fetch\`) to \`/slow\`, which answers after ${s.slowMs} ms; SIGTERM to the primary ` +
      `${s.sigtermAfterMs} ms after they were sent. A request fails if it got no 200 within ${fmtInt(s.requestTimeoutMs)} ms.`,
    '',
    table(['server', 'got 200', 'failed', 'ms to exit', 'exit', 'workers left'], drainRows),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
