// Section 5: workers crashing under load. 2 workers, CPU-bound route, keep-alive load for a fixed
// time; every few seconds one worker is SIGKILLed (the oldest of the primary's current children, so
// the kills alternate between the workers). Counts what the clients saw and how many workers are
// alive at the end. The same against the hand-written node:cluster primary, which re-forks on exit.
import { childPids, fmt, fmtInt, freePort, isAlive, isMain, load, QUICK, sleep, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return {
    workers: 2,
    connections: 50,
    warmupS: 1,
    durationS: quick ? 6 : 20,
    killEveryS: 2,
    route: '/cpu',
  }
}

const TARGETS = [
  { name: 'shoal-express', label: 'shoal (express)', script: 'shoal.mjs', framework: 'express' },
  { name: 'seed-express', label: 'node:cluster by hand, re-forks on exit (express)', script: 'seed.mjs', framework: 'express' },
]

/** 2xx / every attempt (responses of any status, errors, timeouts), in percent. */
export function availability(r) {
  const attempts = r.ok + r.non2xx + r.errors + r.timeouts
  return attempts === 0 ? Number.NaN : (100 * r.ok) / attempts
}

async function measure(target, s, log) {
  const port = await freePort()
  const server = await startServer(new URL(target.script, apps).pathname, {
    env: { FRAMEWORK: target.framework, WORKERS: String(s.workers), PORT: String(port) },
  })
  try {
    const url = server.address + s.route
    await load(url, { connections: s.connections, durationS: s.warmupS })
    // Order in which each worker pid was first seen: the kill goes to the oldest one still alive.
    const firstSeen = new Map()
    const kills = []
    let skipped = 0
    const t0 = performance.now()
    const running = load(url, { connections: s.connections, durationS: s.durationS })
    for (let at = s.killEveryS; at < s.durationS; at += s.killEveryS) {
      await sleep(Math.max(0, t0 + at * 1000 - performance.now()))
      const current = childPids(server.pid).sort((a, b) => a - b)
      for (const pid of current) if (!firstSeen.has(pid)) firstSeen.set(pid, firstSeen.size)
      const victim = current.sort((a, b) => firstSeen.get(a) - firstSeen.get(b))[0]
      if (victim === undefined) {
        skipped++
        continue
      }
      try {
        process.kill(victim, 'SIGKILL')
        kills.push({ atS: (performance.now() - t0) / 1000, pid: victim, workersBefore: current.length })
      } catch {
        skipped++
      }
    }
    const result = await running
    const workersAtEnd = childPids(server.pid).length
    const primaryAlive = isAlive(server.pid)
    const out = {
      ...target,
      requests: result.requests.total,
      ok: result['2xx'],
      non2xx: result.non2xx,
      // autocannon counts a timeout as an error too: here errors are the other errors only.
      errors: result.errors - result.timeouts,
      timeouts: result.timeouts,
      kills: kills.length,
      killLog: kills,
      skipped,
      workersAtEnd,
      primaryAlive,
      durationS: result.duration,
      statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count }]) => [code, count])),
    }
    out.availability = availability(out)
    log(
      `[crash] ${target.label}: ${out.kills} kills, 2xx ${out.ok}, non-2xx ${out.non2xx}, errors ${out.errors}, ` +
        `timeouts ${out.timeouts}, availability ${fmt(out.availability)} %, workers at end ${workersAtEnd}`,
    )
    return out
  } finally {
    server.stop()
  }
}

export async function run(log = console.error) {
  const s = settings()
  const results = []
  for (const target of TARGETS) results.push(await measure(target, s, log))
  return { settings: s, results }
}

export function toMarkdown({ settings: s, results }) {
  const rows = results.map((r) => [
    r.label,
    fmtInt(r.requests),
    fmtInt(r.ok),
    fmtInt(r.non2xx),
    fmtInt(r.errors),
    fmtInt(r.timeouts),
    `${fmtInt(r.kills)}${r.skipped ? ` (${fmtInt(r.skipped)} skipped: no worker)` : ''}`,
    `**${fmt(r.availability)} %**`,
    `${fmtInt(r.workersAtEnd)} / ${fmtInt(s.workers)}${r.primaryAlive ? '' : ' (primary exited)'}`,
  ])
  const killRows = results.map((r) => [
    r.label,
    r.killLog.map((k) => `${fmt(k.atS, 2)} s [${fmtInt(k.workersBefore)} alive]`).join(', ') || '–',
  ])
  return [
    '## 5. Crash under load',
    '',
    `${s.workers} workers, route \`${s.route}\`, autocannon with ${s.connections} keep-alive connections for ${s.durationS} s ` +
      `(after a ${s.warmupS} s warmup); every ${s.killEveryS} s one worker is SIGKILLed: the oldest of the primary's ` +
      "current children (read from /proc), so the kills alternate between the workers and their replacements. shoal's restart " +
      'backoff and crash-loop breaker are at their defaults.',
    '',
    '**availability** = 2xx / (2xx + non-2xx + errors + timeouts). **errors** exclude timeouts (autocannon counts a timeout as ' +
      'an error too; it is counted once here, as a timeout). autocannon counts a reconnect attempt that fails as an error and ' +
      'reconnects at once, so while no worker listens each connection counts many errors: availability is per attempt, not ' +
      'per request a user would send. **workers at end** = live children of the primary when the load stopped.',
    '',
    table(['server', 'requests', '2xx', 'non-2xx', 'errors', 'timeouts', 'kills', 'availability', 'workers at end'], rows),
    '',
    'When the kills happened (seconds since the measured load started; workers alive just before):',
    '',
    table(['server', 'kills'], killRows),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
