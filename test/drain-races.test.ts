// Races at the edges of a drain, on raw sockets: pipelined requests, a header block that arrives slowly,
// cleanup after a missed deadline. Each is a request the client already sent, so losing it is a drop.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { Fixture, sleep } from './helpers/fixture.js'
import { get } from './helpers/http.js'

type Status = { workers: { pid: number; address: string }[] }

async function start(env: Record<string, string>, opts: Record<string, unknown> = {}) {
  const f = new Fixture('http-app.mjs', { FIXTURE_OPTS: JSON.stringify({ logger: 'text', ...opts }), ...env })
  const status = (await f.event('started')).status as Status
  const first = status.workers[0] as { pid: number; address: string }
  return { f, address: first.address, pid: first.pid, port: Number(new URL(first.address).port) }
}

interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

/** A raw client: write bytes when told, collect every response until the server closes the socket. */
async function rawClient(port: number) {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  let data = ''
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    data += chunk
  })
  socket.on('error', () => {}) // a reset shows as missing responses
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return {
    write: (text: string) => socket.write(text),
    /** Every complete response received, once the server closed the socket (or after `timeoutMs`). */
    async responses(timeoutMs = 15_000): Promise<RawResponse[]> {
      await Promise.race([closed, sleep(timeoutMs)])
      socket.destroy()
      return parseResponses(data)
    },
  }
}

function parseResponses(data: string): RawResponse[] {
  const out: RawResponse[] = []
  let rest = data
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) return out
    const [statusLine = '', ...lines] = rest.slice(0, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? 0)
    if (rest.length < end + 4 + length) return out
    out.push({ status: Number(statusLine.split(' ')[1]), headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
  }
}

const request = (path: string) => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`

/** Which `/mark?n=` handlers ran. */
const handled = (f: Fixture) => f.events.filter((e) => e.ev === 'handled').map((e) => e.n)

describe('pipelined requests on one keep-alive socket (regression: a handler ran and its response was lost)', () => {
  it('two written at once while the process drains (async handlers): both answered, Connection: close on the last', async () => {
    const { f, address, port } = await start({ WORKERS: '0' })
    const client = await rawClient(port)
    const busy = get(`${address}/slow?ms=2500`) // keeps the drain going
    await sleep(300)
    f.signal('SIGINT')
    await sleep(100)
    client.write(request('/mark?n=1&ms=200') + request('/mark?n=2&ms=200'))
    const responses = await client.responses()
    expect(responses.map((r) => r.status)).toEqual([200, 200])
    expect(responses.map((r) => r.headers.connection)).toEqual(['keep-alive', 'close'])
    expect(handled(f)).toEqual(['1', '2'])
    expect((await busy).status).toBe(200)
    expect((await f.waitForExit()).code).toBe(0)
  })

  it('two written at once while the process drains (the first answered synchronously): no handler runs unanswered', async () => {
    const { f, address, port } = await start({ WORKERS: '0' })
    const client = await rawClient(port)
    const busy = get(`${address}/slow?ms=2500`)
    await sleep(300)
    f.signal('SIGINT')
    await sleep(100)
    client.write(request('/mark?n=1') + request('/mark?n=2'))
    const responses = await client.responses()
    expect(responses[0]).toMatchObject({ status: 200 })
    expect(responses.at(-1)?.headers.connection).toBe('close')
    await sleep(200) // the fixture's events are on their way
    // Either answered, or never run (the client retries a request the server closed on before reading).
    expect(handled(f)).toEqual(['1', '2'].slice(0, responses.length))
    expect((await busy).status).toBe(200)
  })

  it('two written at once just before the drain: both answered', async () => {
    const { f, port } = await start({ WORKERS: '0' })
    const client = await rawClient(port)
    client.write(request('/mark?n=1&ms=800') + request('/mark?n=2'))
    await f.waitUntil(() => (handled(f).length === 2 ? true : undefined), 'both handlers ran')
    f.signal('SIGINT')
    const responses = await client.responses()
    expect(responses.map((r) => r.status)).toEqual([200, 200])
    expect((await f.waitForExit()).code).toBe(0)
  })
})

describe('a request whose header block arrives slowly across the drain (regression: dropped at the idle grace)', () => {
  it.each([300, 1000])('headers finished %i ms after the drain began (grace 500 ms): served with Connection: close', async (lateMs) => {
    const { f, port } = await start({ WORKERS: '0' }, { idleSocketGraceMs: 500 })
    const client = await rawClient(port)
    client.write('GET /mark?n=slow HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    await sleep(200)
    f.signal('SIGINT')
    await sleep(lateMs)
    client.write('X-Late: yes\r\n\r\n')
    const responses = await client.responses()
    expect(responses).toHaveLength(1)
    expect(responses[0]).toMatchObject({ status: 200, headers: { connection: 'close' } })
    expect(handled(f)).toEqual(['slow'])
    expect((await f.waitForExit()).code).toBe(0)
  })

  it('a header block that never ends is cut at the deadline, not before', async () => {
    const { f, port } = await start({ WORKERS: '0' }, { idleSocketGraceMs: 200, shutdownTimeoutMs: 2000 })
    const client = await rawClient(port)
    client.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n')
    await sleep(200)
    const t0 = Date.now()
    f.signal('SIGINT')
    expect(await client.responses()).toEqual([])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1800)
    expect((await f.waitForExit()).code).toBe(1)
  })
})

describe('cleanup after a missed drain deadline (regression: onShutdown got 0 ms and always failed)', () => {
  it('single process: a hung request times the drain out, onShutdown still gets time to finish', async () => {
    const { f, address } = await start({ WORKERS: '0', CLEANUP_MS: '300' }, { shutdownTimeoutMs: 1500 })
    const hung = get(`${address}/hang`).catch((err: NodeJS.ErrnoException) => err.code)
    await sleep(300)
    f.signal('SIGINT')
    expect((await f.waitForExit()).code).toBe(1) // the deadline was missed
    expect(await hung).toBe('ECONNRESET')
    expect(f.count('cleanup')).toBe(1)
    expect(f.stderr).not.toContain('cleanup failed')
  })

  it('supervised worker: the cleanup finishes and the worker exits 1 on its own, before the primary’s SIGKILL', async () => {
    const { f, address, pid } = await start({ WORKERS: '1', CLEANUP_MS: '300' }, { shutdownTimeoutMs: 1500 })
    void get(`${address}/hang`).catch(() => {})
    await sleep(300)
    process.kill(pid, 'SIGTERM')
    const exit = await f.event('exit', (e) => e.pid === pid)
    expect(exit).toMatchObject({ code: 1, signal: null })
    expect(f.count('cleanup', (e) => e.pid === pid)).toBe(1)
  })

  it('a cleanup that takes too long is cut at its budget, well inside the 2 s kill margin', async () => {
    const { f, address } = await start({ WORKERS: '0', CLEANUP_MS: '20000' }, { shutdownTimeoutMs: 1500 })
    void get(`${address}/hang`).catch(() => {})
    await sleep(300)
    const t0 = Date.now()
    f.signal('SIGINT')
    await f.event('cleanup-start')
    expect((await f.waitForExit()).code).toBe(1)
    const took = Date.now() - t0
    expect(took).toBeGreaterThanOrEqual(1500 + 900) // the deadline, then about 1000 ms of cleanup
    expect(took).toBeLessThan(1500 + 2000)
    expect(f.count('cleanup')).toBe(0)
    expect(f.stderr).toMatch(/cleanup failed/)
  })
})
