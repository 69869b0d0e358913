// One process, no cluster. ADAPTER=1: shoal's adapter registered and served by clusteredListen with
// `workers: 0` (the per-request path of a shoal worker: adapter + drain tracking). ADAPTER=0: the bare
// framework on a plain listen. Env: FRAMEWORK, ADAPTER, PORT (default 0).
import { createServer } from 'node:http'
import { clusteredListenFor, createApp } from './app.mjs'
import { HOST, say } from './common.mjs'

const framework = process.env.FRAMEWORK ?? 'express'
const adapter = process.env.ADAPTER === '1'
const port = Number(process.env.PORT ?? 0)
const app = await createApp(framework, { adapter })

if (adapter) {
  const clusteredListen = await clusteredListenFor(framework)
  const handle = await clusteredListen(app, { port, host: HOST }, { workers: 0, logger: 'silent' })
  say({ address: handle.address, pid: process.pid })
} else if (framework === 'express') {
  const server = createServer(app)
  server.listen(port, HOST, () => say({ address: `http://${HOST}:${server.address().port}`, pid: process.pid }))
} else {
  const address = await app.listen({ port, host: HOST })
  say({ address, pid: process.pid })
}
