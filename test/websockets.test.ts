// WebSockets and server-sent events through a rolling reload and a shutdown (issue 17): every client
// gets a close frame (1012 on reload, 1001 on shutdown, never 1006), spread over the window, and
// reconnects to a new worker; an SSE stream ends with the app's final event.
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { type Client, histogram, sse, wsClients } from './helpers/ws.js'

const WINDOW_MS = 2000
const DEADLINE_MS = 5000
const CLIENTS = 200

interface Started {
  f: Fixture
  address: string
  pids: number[]
}

async function start(fixture: string, env: Record<string, string> = {}): Promise<Started> {
  const f = new Fixture(fixture, {
    WORKERS: '2',
    FIXTURE_OPTS: JSON.stringify({ webSocketCloseWindowMs: WINDOW_MS, shutdownTimeoutMs: DEADLINE_MS, heartbeat: { intervalMs: 200 } }),
    ...env,
  })
  const started = await f.event('started', undefined, 1, 30_000)
  const workers = (started.status as { workers: { pid: number; address: string }[] }).workers
  return { f, address: workers[0]?.address ?? '', pids: workers.map((w) => w.pid) }
}

const wsUrl = (address: string) => `${address.replace('http', 'ws')}/`

/** Per worker that closed connections: the span from its first close to its last, in ms. */
function spreadByPid(clients: Client[]): Map<number, number> {
  const times = new Map<number, number[]>()
  for (const c of clients) for (const h of c.hops) if (h.closedAt !== undefined) times.set(h.pid, [...(times.get(h.pid) ?? []), h.closedAt])
  return new Map([...times].map(([pid, t]) => [pid, Math.max(...t) - Math.min(...t)]))
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

const variants: [string, string, Record<string, string>][] = [
  ['core + ws', 'ws-app.mjs', {}],
  ['express + ws', 'ws-app.mjs', { ADAPTER: 'express' }],
  ['fastify + @fastify/websocket', 'ws-fastify.mjs', {}],
]

describe.each(variants)('WebSockets through %s', (_name, fixture, env) => {
  it(`rolling reload: ${CLIENTS} clients all get 1012 (none 1006), spread over the window, and reconnect to new workers`, async () => {
    const { f, address, pids } = await start(fixture, env)
    const pool = wsClients(wsUrl(address), CLIENTS, () => true)
    try {
      await f.waitUntil(() => (pool.open() ? true : undefined), 'every client connected', 30_000)
      // status() counts them per worker (learnt from the heartbeat).
      let counted = 0
      for (let i = 0; i < 50 && counted !== CLIENTS; i++) {
        const status = (await f.call('status')).status as { workers: { upgraded?: number }[] }
        counted = status.workers.reduce((n, w) => n + (w.upgraded ?? 0), 0)
        if (counted !== CLIENTS) await new Promise((r) => setTimeout(r, 100))
      }
      expect(counted).toBe(CLIENTS)

      const reply = await f.call('reload', {}, 60_000)
      expect(reply).toMatchObject({ ok: true, outcome: { generation: 1, replaced: 2 } })
      await f.waitUntil(
        () => (pool.open() && pool.clients.every((c) => c.hops.at(-1)?.generation === 1) ? true : undefined),
        'every client on a new worker',
        30_000,
      )
    } finally {
      pool.stop()
    }
    const { clients } = pool
    const codes = histogram(clients)
    const spread = spreadByPid(clients)
    const reconnects = clients.flatMap((c) => c.reconnectMs)
    const viaOld = clients.filter((c) => c.hops.length > 2).length
    console.log(
      `[${_name}] reload: closes by code ${JSON.stringify(codes)}; spread of closes per old worker (ms) ${JSON.stringify([...spread.values()])} (window ${WINDOW_MS}); reconnect ms p50 ${percentile(reconnects, 50)} p99 ${percentile(reconnects, 99)} max ${Math.max(...reconnects)}; clients that reconnected via the other old worker first: ${viaOld}`,
    )
    expect(clients.flatMap((c) => c.errors)).toEqual([])
    expect(Object.keys(codes)).toEqual(['1012'])
    for (const c of clients) {
      // Every client was on an old worker and was closed at least once; no reconnect went back to the
      // worker that closed it (it had stopped accepting), and the last one is on a new worker.
      expect(c.hops.length).toBeGreaterThanOrEqual(2)
      for (let i = 1; i < c.hops.length; i++) expect(c.hops[i]?.pid).not.toBe(c.hops[i - 1]?.pid)
      expect(pids).not.toContain(c.hops.at(-1)?.pid)
    }
    for (const pid of pids) expect(spread.get(pid)).toBeGreaterThanOrEqual(WINDOW_MS / 2)
  }, 120_000)

  it(`SIGTERM: ${CLIENTS} clients all get 1001, an SSE stream ends with the app's final event, exit 0 inside the deadline`, async () => {
    const { f, address } = await start(fixture, env)
    const pool = wsClients(wsUrl(address), CLIENTS, () => false)
    const stream = sse(`${address}/events`)
    try {
      await f.waitUntil(() => (pool.open() && stream.events.length > 0 ? true : undefined), 'every client connected', 30_000)
      const sentAt = Date.now()
      f.signal('SIGTERM')
      const exit = await f.waitForExit(DEADLINE_MS + 10_000)
      const tookMs = Date.now() - sentAt
      const codes = histogram(pool.clients)
      console.log(`[${_name}] SIGTERM: closes by code ${JSON.stringify(codes)}; primary exited ${exit.code} after ${tookMs} ms`)
      expect(exit).toEqual({ code: 0, signal: null })
      expect(tookMs).toBeLessThan(DEADLINE_MS)
      expect(codes).toEqual({ 1001: CLIENTS })
      expect(pool.clients.flatMap((c) => c.errors)).toEqual([])
      expect(stream.ended).toBe('end')
      expect(stream.events.at(-1)).toMatchObject({ event: 'reconnect' })
      expect(JSON.parse(stream.events.at(-1)?.data ?? '{}')).toMatchObject({ reason: 'shutdown' })
      expect(f.stderr).toMatch(/closed \d+ upgraded connection\(s\) with 1001/)
    } finally {
      pool.stop()
    }
  }, 60_000)

  it('an SSE stream open during a reload ends with the final event before its worker exits; the client continues on a new worker', async () => {
    const { f, address, pids } = await start(fixture, env)
    const stream = sse(`${address}/events`)
    await f.waitUntil(() => (stream.events[0]?.event === 'hello' ? true : undefined), 'hello')
    const first = JSON.parse(stream.events[0]?.data ?? '{}') as { pid: number }
    const reload = f.call('reload', {}, 60_000)
    await f.waitUntil(() => stream.ended, 'the stream to end', 20_000)
    // A clean end carrying the old worker's own final event: it was still there to write it.
    expect(stream.ended).toBe('end')
    expect(stream.events.at(-1)?.event).toBe('reconnect')
    expect(JSON.parse(stream.events.at(-1)?.data ?? '{}')).toMatchObject({ pid: first.pid, reason: 'reload' })
    // Then it exits cleanly.
    const exit = await f.event('exit', (e) => e.pid === first.pid, 1, 20_000)
    expect(exit).toMatchObject({ code: 0 })
    // Reconnecting: a stream that lands on the other old worker (not replaced yet) ends the same way.
    let hops = 0
    for (;;) {
      const again = sse(`${address}/events`)
      // A reconnect that fails is a dropped request: say so at once, not after the wait.
      await f.waitUntil(() => (again.events[0]?.event === 'hello' || again.ended ? true : undefined), 'hello on reconnect')
      expect(again.events[0]?.event, `reconnect ended (${again.ended}, ${again.error}) before its first event`).toBe('hello')
      const next = JSON.parse(again.events[0]?.data ?? '{}') as { pid: number; generation: number }
      if (next.generation === 1) {
        expect(pids).not.toContain(next.pid)
        break
      }
      expect(++hops).toBeLessThan(3)
      await f.waitUntil(() => again.ended, 'the old worker to end the stream', 20_000)
      expect(again.ended).toBe('end')
      expect(again.events.at(-1)?.event).toBe('reconnect')
    }
    await reload
  }, 60_000)
})

describe('WebSockets on a reload, without the ws integration or with an app hook', () => {
  /** 50 clients that do not reconnect, through one reload of a ws-app in `mode`. */
  async function reloadWith(mode: string) {
    const { f, address } = await start('ws-app.mjs', { WS_MODE: mode })
    const pool = wsClients(wsUrl(address), 50, () => false)
    try {
      await f.waitUntil(() => (pool.open() ? true : undefined), 'every client connected', 30_000)
      await f.call('reload', {}, 60_000)
      await f.waitUntil(() => (pool.clients.every((c) => c.hops.at(-1)?.closedAt) ? true : undefined), 'every client closed', 20_000)
    } finally {
      pool.stop()
    }
    return { f, clients: pool.clients }
  }

  it('raw: shoal writes the 1012 close frame on the upgraded socket itself', async () => {
    const { f, clients } = await reloadWith('raw')
    expect(histogram(clients)).toEqual({ 1012: 50 })
    expect(f.stderr).toMatch(/by a close frame/)
  }, 60_000)

  it('hook: the app sends its own last message, then closes with 1012', async () => {
    const { clients } = await reloadWith('hook')
    expect(histogram(clients)).toEqual({ 1012: 50 })
    for (const c of clients) expect(c.hops[0]?.messages).toEqual([{ bye: 'reload' }])
  }, 60_000)
})
