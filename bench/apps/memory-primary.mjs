// A primary with WORKERS idle workers, either shoal's (MODE=shoal, core API) or a bare node:cluster
// primary (MODE=bare). Once every worker listens, waits SETTLE_MS and prints the primary's memory.
import cluster from 'node:cluster'
import { say, sleep } from './common.mjs'

const mode = process.env.MODE ?? 'shoal'
const workers = Number(process.env.WORKERS ?? 2)
const settleMs = Number(process.env.SETTLE_MS ?? 2000)
const exec = new URL('./idle-worker.mjs', import.meta.url)

let primary
if (mode === 'shoal') {
  const { createPrimary } = await import('@shoal/core')
  primary = createPrimary({ exec, workers, logger: 'silent', signals: false })
  await primary.start()
} else {
  cluster.setupPrimary({ exec: exec.pathname })
  cluster.schedulingPolicy = cluster.SCHED_RR
  await Promise.all(Array.from({ length: workers }, () => new Promise((resolve) => cluster.fork().once('listening', resolve))))
}
await sleep(settleMs)
const { rss, heapUsed } = process.memoryUsage()
say({ result: { mode, workers, settleMs, rss, heapUsed } })
if (primary) await primary.shutdown('bench done')
else for (const w of Object.values(cluster.workers)) w.kill()
process.exit(0)
