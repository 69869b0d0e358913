// Section 3: shared values broadcast latency. For N idle workers, the primary sets a shared value
// repeatedly; each worker reports when it saw the new value (onSharedChange). Latency of a set = time
// until the LAST worker has it. Also the primary's CPU time inside set().
import { fmt, fmtInt, isMain, percentile, QUICK, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return { sizes: [2, 8, 32], count: quick ? 20 : 50, warmup: 5, spacingMs: 20 }
}

export async function run(log = console.error) {
  const s = settings()
  const results = []
  for (const workers of s.sizes) {
    const server = await startServer(new URL('broadcast-primary.mjs', apps).pathname, {
      env: { WORKERS: String(workers), COUNT: String(s.count), WARMUP: String(s.warmup), SPACING_MS: String(s.spacingMs) },
      readyKey: 'result',
      timeoutMs: 240_000,
    })
    server.stop()
    const r = server.ready.result
    const seenMs = r.sets.filter((x) => x.acks === workers).map((x) => x.lastSeenMs)
    const ackMs = r.sets.filter((x) => x.acks === workers).map((x) => x.lastAckMs)
    const out = {
      workers,
      count: r.count,
      complete: seenMs.length,
      missingAcks: r.sets.reduce((n, x) => n + (workers - x.acks), 0),
      p50: percentile(seenMs, 50),
      p95: percentile(seenMs, 95),
      max: Math.max(...seenMs),
      ackP50: percentile(ackMs, 50),
      ackMax: Math.max(...ackMs),
      cpuMicrosPerSet: r.cpuMicrosPerSet,
      syncMsPerSet: r.syncMsPerSet,
      phaseCpuMicrosPerSet: r.phaseCpuMicros / (r.count + r.warmup),
      bootMs: r.bootMs,
    }
    log(
      `[broadcast] ${workers} workers: p50 ${fmt(out.p50)} ms, p95 ${fmt(out.p95)} ms, max ${fmt(out.max)} ms, cpu ${fmt(out.cpuMicrosPerSet, 0)} µs/set`,
    )
    results.push(out)
  }
  return { settings: s, results }
}

export function toMarkdown({ settings: s, results }) {
  const base = results[0]
  const rows = results.map((r) => [
    fmtInt(r.workers),
    `${fmtInt(r.complete)} / ${fmtInt(r.count)}`,
    fmt(r.p50),
    fmt(r.p95),
    fmt(r.max),
    r === base ? '1.00×' : `${fmt(r.p50 / base.p50)}×`,
    fmt(r.ackP50),
    fmtInt(r.cpuMicrosPerSet),
    fmt(r.syncMsPerSet, 3),
    fmtInt(r.phaseCpuMicrosPerSet),
    fmtInt(r.bootMs),
  ])
  return [
    '## 3. Shared values: broadcast latency',
    '',
    `A shoal primary (core API, \`createPrimary\`) with N idle workers calls \`primary.shared.set('v', i)\` ${s.count} times ` +
      `${s.spacingMs} ms apart (after ${s.warmup} unmeasured sets). Each worker sees the change with \`onSharedChange\` and sends ` +
      'back the wall-clock time it saw it (`performance.timeOrigin + performance.now()`, same clock in every process). ' +
      'Latency of one set = from just before `set()` to the last worker having the value. ' +
      '**CPU µs / set**: `process.cpuUsage()` delta around the `set()` call (serialising and writing N IPC messages), averaged. ' +
      "**CPU µs / set, incl. acks**: all of the primary's CPU during the phase, including receiving the N acks, per set. " +
      'All processes share the same cores; with more workers than cores, a worker may wait for a core before it runs.',
    '',
    table(
      [
        'workers',
        'sets seen by all',
        'p50 ms',
        'p95 ms',
        'max ms',
        'p50 vs 2 workers',
        'p50 ms until last ack back in primary',
        'CPU µs / set',
        'wall ms inside set()',
        'CPU µs / set, incl. acks',
        'cluster boot ms',
      ],
      rows,
    ),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
