import http from 'node:http'

export interface Reply {
  /** The request went out on a keep-alive socket that had already served a response. */
  reusedSocket: boolean
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  json<T = Record<string, unknown>>(): T
}

/** One GET. `agent: false` opens a fresh connection (so round-robin picks a worker per request). */
export function get(url: string, agent: http.Agent | false = false, timeoutMs = 15_000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
      const reusedSocket = req.reusedSocket
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        body += c
      })
      res.on('end', () =>
        resolve({ reusedSocket, status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T }),
      )
      res.on('error', reject)
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)))
    req.on('error', (err: NodeJS.ErrnoException) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })))
  })
}

export interface HammerResult {
  sent: number
  statuses: Record<number, number>
  /** Every failure, e.g. `ECONNRESET on a reused socket`, `ECONNREFUSED on a new socket`. */
  errors: string[]
  pids: Set<number>
  /** Responses that asked to close the connection. */
  closeHeaders: number
}

/**
 * A keep-alive client sending requests back to back (one socket at a time) until `stop()` or a bound
 * on time/count. Every answer and every error is counted: to this client, a reset is a dropped request.
 */
export function hammer(
  url: string,
  {
    maxRequests = 20_000,
    maxMs = 30_000,
    sockets = 1,
    requestTimeoutMs = 15_000,
    agent = new http.Agent({ keepAlive: true, maxSockets: sockets }),
  } = {},
) {
  const result: HammerResult = { sent: 0, statuses: {}, errors: [], pids: new Set(), closeHeaders: 0 }
  let stopped = false
  const started = Date.now()
  const loop = async () => {
    while (!stopped && result.sent < maxRequests && Date.now() - started < maxMs) {
      result.sent++
      try {
        const reply = await get(url, agent, requestTimeoutMs)
        result.statuses[reply.status] = (result.statuses[reply.status] ?? 0) + 1
        if (reply.headers.connection === 'close') result.closeHeaders++
        const pid = Number((reply.json() as { pid?: number }).pid)
        if (pid) result.pids.add(pid)
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean }
        result.errors.push(`${e.code ?? e.message} on a ${e.reusedSocket ? 'reused' : 'new'} socket`)
      }
    }
  }
  const done = Promise.all(Array.from({ length: sockets }, loop)).then(() => {
    agent.destroy()
    return result
  })
  return {
    result,
    stop: () => {
      stopped = true
      return done
    },
    done,
  }
}

export interface Pin {
  pid: number
  /** A keep-alive agent of one socket, connected to that worker: its requests stay there. */
  agent: http.Agent
  /** The answer that found it. */
  reply: Reply
}

function pidOf(reply: Reply): number {
  const header = Number(reply.headers['x-pid'])
  return Number.isInteger(header) && header > 0 ? header : Number(reply.json<{ pid: number }>().pid)
}

/**
 * Keep-alive connections pinned to `count` different workers, whatever the balancing. With a
 * shared listening socket the kernel gives a new connection to whichever worker accepts first, so
 * sequential fresh connections may all land on one; here each new connection is opened while every
 * worker found so far is busy (a `busyPath` request blocking its event loop, e.g. the fixtures'
 * `/spin`), so only a worker not found yet can accept it. Destroy the agents when done.
 */
export async function pinWorkers(
  base: string,
  count: number,
  { path = '/', busyPath = '/spin?ms=200', attempts = 30 } = {},
): Promise<Pin[]> {
  const pins: Pin[] = []
  for (let i = 0; i < attempts && pins.length < count; i++) {
    const busy = pins.map((p) => get(`${base}${busyPath}`, p.agent).catch(() => undefined))
    if (busy.length > 0) await new Promise((r) => setTimeout(r, 30)) // their event loops are blocked now
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const reply = await get(`${base}${path}`, agent)
    await Promise.all(busy)
    const pid = pidOf(reply)
    if (pins.some((p) => p.pid === pid)) agent.destroy()
    else pins.push({ pid, agent, reply })
  }
  return pins
}

/** Each worker's answer to `path` (by pid), found with `pinWorkers`; the connections are closed after. */
export async function answerFromEach(base: string, count: number, path = '/', busyPath?: string): Promise<Map<number, Reply>> {
  const pins = await pinWorkers(base, count, { path, ...(busyPath && { busyPath }) })
  for (const p of pins) p.agent.destroy()
  return new Map(pins.map((p) => [p.pid, p.reply]))
}
