// Section 4: the primary's own memory. A shoal primary with 2 idle workers vs a bare node:cluster
// primary with the same 2 idle workers, RSS read in the primary ~2 s after every worker listens.
// Runs alternate (shoal, bare, shoal, ...) and the table shows medians.
import { fmt, isMain, mb, median, QUICK, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)

export function settings(quick = QUICK) {
  return { workers: 2, settleMs: 2000, rounds: quick ? 1 : 3 }
}

export async function run(log = console.error) {
  const s = settings()
  const samples = { shoal: [], bare: [] }
  for (let round = 0; round < s.rounds; round++) {
    for (const mode of ['shoal', 'bare']) {
      const server = await startServer(new URL('memory-primary.mjs', apps).pathname, {
        env: { MODE: mode, WORKERS: String(s.workers), SETTLE_MS: String(s.settleMs) },
        readyKey: 'result',
      })
      server.stop()
      samples[mode].push(server.ready.result)
      log(`[memory] ${mode}: rss ${mb(server.ready.result.rss)}, heap used ${mb(server.ready.result.heapUsed)}`)
    }
  }
  const summary = (mode) => ({
    mode,
    rss: median(samples[mode].map((x) => x.rss)),
    heapUsed: median(samples[mode].map((x) => x.heapUsed)),
    rssAll: samples[mode].map((x) => x.rss),
  })
  return { settings: s, shoal: summary('shoal'), bare: summary('bare') }
}

export function toMarkdown({ settings: s, shoal, bare }) {
  const row = (label, r) => [label, mb(r.rss), r.rssAll.map(mb).join(', '), mb(r.heapUsed), `${fmt(r.rss / bare.rss)}×`]
  return [
    '## 4. Primary memory',
    '',
    `RSS of the primary process (\`process.memoryUsage().rss\`) with ${s.workers} idle workers, read ${s.settleMs} ms after ` +
      `every worker listens; median of ${s.rounds} run(s) each, alternating. The workers are the same script in both cases.`,
    '',
    table(
      ['primary', 'RSS (median)', 'RSS per run', 'heap used (median)', 'RSS vs bare'],
      [row('shoal (`createPrimary`)', shoal), row('bare `node:cluster`', bare)],
    ),
    '',
    `Difference, shoal − bare: ${shoal.rss >= bare.rss ? '+' : '−'}${mb(Math.abs(shoal.rss - bare.rss))} RSS.`,
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
