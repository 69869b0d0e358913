// A shoal primary (core API) with WORKERS idle workers: sets the shared value `v` COUNT times,
// SPACING_MS apart, and prints one JSON line with, per set, when it was set and when each worker
// saw it, plus the primary's CPU time spent inside set(). Env: WORKERS, COUNT, WARMUP, SPACING_MS.
import cluster from 'node:cluster'
import { createPrimary } from '@shoal/core'
import { say, sleep } from './common.mjs'

const workers = Number(process.env.WORKERS ?? 2)
const count = Number(process.env.COUNT ?? 50)
const warmup = Number(process.env.WARMUP ?? 5)
const spacingMs = Number(process.env.SPACING_MS ?? 20)
const now = () => performance.timeOrigin + performance.now()

const primary = createPrimary({
  exec: new URL('./broadcast-worker.mjs', import.meta.url),
  workers,
  shared: {},
  logger: 'silent',
  signals: false,
  readyTimeoutMs: 180_000,
})
const seen = new Map() // v -> { workerT: [], ackAt: [] }
cluster.on('message', (_worker, message) => {
  if (message?.app !== 'ack') return
  const entry = seen.get(message.v)
  if (!entry) return
  entry.workerT.push(message.t)
  entry.ackAt.push(now())
})

const bootStarted = now()
await primary.start()
const bootMs = now() - bootStarted

const sets = []
let cpuMicros = 0
let syncMs = 0
const phaseCpu = process.cpuUsage()
const phaseStarted = performance.now()
for (let v = 1; v <= warmup + count; v++) {
  const entry = { workerT: [], ackAt: [] }
  seen.set(v, entry)
  const cpu = process.cpuUsage()
  const setAt = now()
  primary.shared.set('v', v)
  const syncEnd = now()
  const used = process.cpuUsage(cpu)
  if (v > warmup) {
    cpuMicros += used.user + used.system
    syncMs += syncEnd - setAt
    sets.push({ v, setAt, entry })
  }
  await sleep(spacingMs)
}
// Let the last acks arrive.
const deadline = performance.now() + 5000
while (performance.now() < deadline && sets.some((s) => s.entry.workerT.length < workers)) await sleep(10)
const phase = process.cpuUsage(phaseCpu)
const phaseMs = performance.now() - phaseStarted

say({
  result: {
    workers,
    count,
    warmup,
    spacingMs,
    bootMs,
    cpuMicrosPerSet: cpuMicros / count,
    syncMsPerSet: syncMs / count,
    phaseCpuMicros: phase.user + phase.system,
    phaseMs,
    sets: sets.map(({ v, setAt, entry }) => ({
      v,
      acks: entry.workerT.length,
      lastSeenMs: entry.workerT.length ? Math.max(...entry.workerT) - setAt : null,
      lastAckMs: entry.ackAt.length ? Math.max(...entry.ackAt) - setAt : null,
    })),
  },
})
await primary.shutdown('bench done')
process.exit(0)
