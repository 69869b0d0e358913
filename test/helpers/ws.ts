// Real `ws` clients that remember every connection: which worker answered (its first message), how
// and when it closed, and how long the reconnect took.
import http from 'node:http'
import WebSocket from 'ws'

export interface Hop {
  pid: number
  generation: number
  openedAt: number
  closedAt?: number
  code?: number
  reason?: string
  /** Messages after the first one (an app's last word before closing). */
  messages: unknown[]
}

export interface Client {
  hops: Hop[]
  errors: string[]
  /** Time from a close to the next connection's first message, per reconnect. */
  reconnectMs: number[]
}

/** `count` clients on `url`; each reconnects after a close while `reconnect()` says so. */
export function wsClients(url: string, count: number, reconnect: () => boolean) {
  const clients: Client[] = Array.from({ length: count }, () => ({ hops: [], errors: [], reconnectMs: [] }))
  const sockets = new Set<WebSocket>()
  let stopped = false
  const connect = (client: Client, closedAt?: number) => {
    const ws = new WebSocket(url)
    sockets.add(ws)
    let hop: Hop | undefined
    ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as { pid?: number; generation?: number }
      if (hop) {
        hop.messages.push(message)
        return
      }
      hop = { pid: message.pid ?? -1, generation: message.generation ?? -1, openedAt: Date.now(), messages: [] }
      client.hops.push(hop)
      if (closedAt !== undefined) client.reconnectMs.push(hop.openedAt - closedAt)
    })
    ws.on('error', (err) => client.errors.push(err.message))
    ws.on('close', (code, reason) => {
      sockets.delete(ws)
      const at = Date.now()
      if (hop) Object.assign(hop, { closedAt: at, code, reason: String(reason) })
      else client.errors.push(`closed ${code} before the first message`)
      if (stopped || !reconnect()) return
      setTimeout(() => connect(client, at), 20 + Math.random() * 30)
    })
  }
  for (const client of clients) connect(client)
  return {
    clients,
    /** Every client's current connection has answered. */
    open: () => clients.every((c) => c.hops.length > 0 && c.hops.at(-1)?.closedAt === undefined),
    stop: () => {
      stopped = true
      for (const ws of sockets) ws.terminate()
    },
  }
}

/** Closes and their codes, by code. */
export function histogram(clients: Client[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of clients) for (const h of c.hops) if (h.code !== undefined) out[h.code] = (out[h.code] ?? 0) + 1
  return out
}

export interface SseStream {
  events: { event: string; data: string; at: number }[]
  /** 'end' when the server finished the response, 'error' when it was cut. */
  ended?: 'end' | 'error'
  /** Why the request failed, when it did. */
  error?: string
}

/** Reads one server-sent-events response. */
export function sse(url: string): SseStream {
  const stream: SseStream = { events: [] }
  // A new connection per stream, as an EventSource reconnect after the server ended the stream: the
  // global agent would reuse a pooled socket to the worker that just ended it and is exiting.
  http
    .get(url, { agent: false }, (res) => {
      let buffered = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        buffered += chunk
        const blocks = buffered.split('\n\n')
        buffered = blocks.pop() ?? ''
        for (const block of blocks) {
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message'
          const data = /^data: (.*)$/m.exec(block)?.[1] ?? ''
          stream.events.push({ event, data, at: Date.now() })
        }
      })
      res.on('end', () => {
        stream.ended ??= 'end'
      })
      res.on('error', () => {
        stream.ended ??= 'error'
      })
      res.on('aborted', () => {
        stream.ended ??= 'error'
      })
    })
    .on('error', (err: NodeJS.ErrnoException) => {
      stream.ended ??= 'error'
      stream.error ??= err.code ?? err.message
    })
  return stream
}
