// A shoal worker that acknowledges every change of the shared value `v` to the primary, with the
// wall-clock time (sub-millisecond) at which it saw it. App messages without `shoal: 1` pass through.
import { createServer } from 'node:http'
import { onSharedChange, serve } from '@shoal/core'
import { HOST } from './common.mjs'

onSharedChange((name, snapshot) => {
  if (name === 'v') process.send({ app: 'ack', v: snapshot.v, t: performance.timeOrigin + performance.now() })
})
await serve(
  createServer((_req, res) => res.end()),
  { port: 0, host: HOST },
  { logger: 'silent' },
)
