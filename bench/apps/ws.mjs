// A shoal cluster on the core API serving WebSockets (`ws`, closed by shoal through
// closeWebSocketsOnDrain): each connection is greeted with the worker's pid and code generation.
// The primary prints the address and its lifecycle events. Env: WORKERS, WINDOW_MS.
import http from 'node:http'
import { closeWebSocketsOnDrain, listen, runCluster } from '@shoal/core'
import { WebSocketServer } from 'ws'
import { HOST, say } from './common.mjs'

const handle = await runCluster(
  { workers: Number(process.env.WORKERS ?? 2), logger: 'silent', webSocketCloseWindowMs: Number(process.env.WINDOW_MS ?? 2000) },
  () => {
    const server = http.createServer((_req, res) => res.end('ok'))
    const wss = new WebSocketServer({ server })
    const hello = JSON.stringify({ pid: process.pid, generation: Number(process.env.SHOAL_GENERATION ?? 0) })
    wss.on('connection', (ws) => ws.send(hello))
    closeWebSocketsOnDrain(wss)
    return { server, listen: () => listen(server, { port: 0, host: HOST }) }
  },
)
if (handle.role === 'primary') {
  for (const ev of ['ready', 'reload-done', 'reload-failed', 'exit']) handle.on(ev, (data) => say({ ev, t: Date.now(), ...data }))
  const status = handle.status()
  say({ address: status.workers[0]?.address, pid: process.pid, workers: status.workers.length })
}
