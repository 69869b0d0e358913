// Section 7: WebSockets through a rolling reload and a shutdown. 200 `ws` clients on 2 workers.
// (a) SIGUSR2: every client reconnects (after 20–50 ms) when its socket closes; we record each close
// code, when each old worker closed its sockets (the spread over the close window), how long each
// reconnect took to reach a worker, and how many reconnects landed on a worker that was still to be
// replaced (an extra hop). (b) SIGTERM: close codes, the spread, and the primary's exit code and time.
import WebSocket from 'ws'
import { fmt, fmtInt, isMain, percentile, QUICK, sleep, startServer, table } from './lib.mjs'

const app = new URL('./apps/ws.mjs', import.meta.url).pathname

export function settings(quick = QUICK) {
  return { workers: 2, clients: quick ? 50 : 200, windowMs: 2000, settleMs: quick ? 10_000 : 20_000, exitTimeoutMs: 15_000 }
}

/** `count` clients; each remembers its connections (worker pid, generation, close code and time). */
function clients(url, count, reconnect) {
  const all = Array.from({ length: count }, () => ({ hops: [], reconnectMs: [], errors: 0 }))
  const sockets = new Set()
  let stopped = false
  const connect = (client, closedAt) => {
    const ws = new WebSocket(url)
    sockets.add(ws)
    let hop
    ws.on('message', (data) => {
      if (hop) return
      const { pid, generation } = JSON.parse(String(data))
      hop = { pid, generation, openedAt: performance.now() }
      client.hops.push(hop)
      if (closedAt !== undefined) client.reconnectMs.push(hop.openedAt - closedAt)
    })
    ws.on('error', () => client.errors++)
    ws.on('close', (code) => {
      sockets.delete(ws)
      const at = performance.now()
      if (hop) Object.assign(hop, { closedAt: at, code })
      if (!stopped && reconnect) setTimeout(() => connect(client, at), 20 + Math.random() * 30)
    })
  }
  for (const client of all) connect(client)
  return {
    all,
    open: () => all.every((c) => c.hops.length > 0 && c.hops.at(-1).closedAt === undefined),
    stop: () => {
      stopped = true
      for (const ws of sockets) ws.terminate()
    },
  }
}

async function until(check, timeoutMs) {
  const end = Date.now() + timeoutMs
  while (!check() && Date.now() < end) await sleep(25)
  return check()
}

function summarize(all, oldGeneration) {
  const codes = {}
  const closesByPid = new Map()
  for (const c of all) {
    for (const h of c.hops) {
      if (h.code === undefined) continue
      codes[h.code] = (codes[h.code] ?? 0) + 1
      if (h.generation === oldGeneration) closesByPid.set(h.pid, [...(closesByPid.get(h.pid) ?? []), h.closedAt])
    }
  }
  const spreadMs = [...closesByPid.values()].map((times) => Math.max(...times) - Math.min(...times))
  const reconnects = all.flatMap((c) => c.reconnectMs)
  const extraHops = all.reduce((n, c) => n + c.hops.slice(1).filter((h) => h.generation === oldGeneration).length, 0)
  return { codes, spreadMs, reconnects, extraHops, errors: all.reduce((n, c) => n + c.errors, 0) }
}

async function reloadRun(s) {
  const server = await startServer(app, { env: { WORKERS: String(s.workers), WINDOW_MS: String(s.windowMs) } })
  const pool = clients(server.address.replace('http', 'ws'), s.clients, true)
  try {
    if (!(await until(pool.open, 15_000))) throw new Error('clients did not all connect')
    const sentAt = performance.now()
    server.signal('SIGUSR2')
    const done = await server.waitFor((m) => m.ev === 'reload-done' || m.ev === 'reload-failed', s.settleMs, 'reload-done')
    const settled = await until(() => pool.open() && pool.all.every((c) => c.hops.at(-1).generation === 1), s.settleMs)
    return { ...summarize(pool.all, 0), reload: done.ev, durationMs: done.durationMs, settled, tookMs: performance.now() - sentAt }
  } finally {
    pool.stop()
    server.stop()
  }
}

async function shutdownRun(s) {
  const server = await startServer(app, { env: { WORKERS: String(s.workers), WINDOW_MS: String(s.windowMs) } })
  const pool = clients(server.address.replace('http', 'ws'), s.clients, false)
  try {
    if (!(await until(pool.open, 15_000))) throw new Error('clients did not all connect')
    const sentAt = performance.now()
    server.signal('SIGTERM')
    const exit = await server.waitExit(s.exitTimeoutMs)
    await until(() => pool.all.every((c) => c.hops.at(-1).closedAt !== undefined), 2000)
    return {
      ...summarize(pool.all, 0),
      exitCode: exit ? (exit.code ?? exit.signal) : 'still running',
      exitMs: exit ? exit.at - sentAt : undefined,
    }
  } finally {
    pool.stop()
    server.stop()
  }
}

const codesText = (codes) =>
  Object.entries(codes)
    .map(([code, n]) => `${code} × ${fmtInt(n)}`)
    .join(', ') || 'none'

export async function run(log = console.error) {
  const s = settings()
  const reload = await reloadRun(s)
  log(
    `[websockets] reload: ${codesText(reload.codes)}; spread ${reload.spreadMs.map((x) => fmt(x, 0)).join(', ')} ms; reconnect p50 ${fmt(percentile(reload.reconnects, 50), 0)} ms`,
  )
  const shutdown = await shutdownRun(s)
  log(`[websockets] SIGTERM: ${codesText(shutdown.codes)}; exit ${shutdown.exitCode} after ${fmt(shutdown.exitMs, 0)} ms`)
  return { settings: s, reload, shutdown }
}

export function toMarkdown({ settings: s, reload: r, shutdown: d }) {
  const spread = (x) => x.spreadMs.map((ms) => fmt(ms, 0)).join(', ')
  return [
    '## 7. WebSockets through a reload and a shutdown',
    '',
    `${fmtInt(s.clients)} \`ws\` clients on ${s.workers} workers (core API, \`closeWebSocketsOnDrain\`, \`webSocketCloseWindowMs: ${fmtInt(s.windowMs)}\`).`,
    'Each client reconnects 20–50 ms after a close during the reload, and not at all after SIGTERM.',
    '',
    table(
      ['', 'close codes', 'closes spread per old worker (ms)', 'reconnect p50 / p99 / max (ms)', 'extra hops', 'client errors', 'outcome'],
      [
        [
          'rolling reload (SIGUSR2)',
          `**${codesText(r.codes)}**`,
          spread(r),
          `${fmt(percentile(r.reconnects, 50), 0)} / ${fmt(percentile(r.reconnects, 99), 0)} / ${fmt(Math.max(...r.reconnects), 0)}`,
          fmtInt(r.extraHops),
          fmtInt(r.errors),
          `${r.reload}, ${fmt(r.durationMs, 0)} ms; every client on the new code: ${r.settled ? 'yes' : 'no'}`,
        ],
        [
          'shutdown (SIGTERM)',
          `**${codesText(d.codes)}**`,
          spread(d),
          '—',
          '—',
          fmtInt(d.errors),
          `exit ${d.exitCode} after ${fmt(d.exitMs, 0)} ms`,
        ],
      ],
    ),
    '',
    '1012 is "service restart", 1001 "going away"; 1006 (closed without a close frame) would be a dropped connection.',
    'An extra hop is a reconnect that landed on the other old worker, which closes it again when its turn in the reload comes (`reloadConcurrency: 1`).',
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
