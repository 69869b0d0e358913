// An idle HTTP worker: under a shoal primary it uses shoal's serve(); under a bare node:cluster
// primary, a plain listen (so the bare side never loads shoal).
import { createServer } from 'node:http'
import { HOST } from './common.mjs'

const server = createServer((_req, res) => res.end())
if (process.env.SHOAL_WORKER_INDEX !== undefined) {
  const { serve } = await import('@shoal/core')
  await serve(server, { port: 0, host: HOST }, { logger: 'silent' })
} else {
  server.listen(0, HOST)
}
