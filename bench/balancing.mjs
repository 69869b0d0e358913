// Section 8: how connections reach the workers (`balancing`). ApacheBench opens a new connection per
// request (what nginx's default upstream, health checkers and webhooks do) and, for comparison, keeps
// them alive (-k). Servers: one plain Express process; node:cluster by hand (round-robin); shoal with
// each `balancing` mode. On every Node version the bench can get: the machine's own, and node@22/24/26
// from the npm registry (installed once into bench/.nodes). Then a rolling reload under the same
// connection-per-request load, direct and behind nginx with its default proxy settings.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CPU_FIB, fmt, fmtInt, freePort, isMain, measureCpuRouteMs, QUICK, ratio, sleep, startServer, table } from './lib.mjs'

const apps = new URL('./apps/', import.meta.url)
const nodesDir = new URL('./.nodes/', import.meta.url).pathname
const MIGRATE = '/proc/sys/net/ipv4/tcp_migrate_req'

export function settings(quick = QUICK) {
  return {
    workers: 2,
    concurrency: 50,
    helloRequests: quick ? 4000 : 10_000,
    cpuRequests: quick ? 1000 : 3000,
    rounds: quick ? 1 : 3,
    reloadLoadS: quick ? 5 : 8,
    majors: (process.env.BALANCING_NODES ?? '22,24,26').split(',').filter(Boolean),
  }
}

/** The machine's Node, then node@N for each major in `majors` (installed from npm on first use). */
function nodeBinaries(majors, log) {
  const bins = [{ version: process.version, path: process.execPath }]
  for (const major of majors) {
    const path = join(nodesDir, `node${major}`, 'node_modules', 'node', 'bin', 'node')
    if (!existsSync(path)) {
      log(`[balancing] installing node@${major} into bench/.nodes (once)`)
      try {
        execFileSync(
          'npm',
          ['install', '--prefix', join(nodesDir, `node${major}`), '--no-audit', '--no-fund', '--silent', `node@${major}`],
          {
            stdio: 'ignore',
          },
        )
      } catch (err) {
        log(`[balancing] node@${major} could not be installed: ${err.message}`)
        continue
      }
    }
    const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim()
    if (version.startsWith(`${process.version.split('.')[0]}.`)) continue
    bins.push({ version, path })
  }
  return bins
}

function readMigrate() {
  try {
    return readFileSync(MIGRATE, 'utf8').trim()
  } catch {
    return undefined
  }
}

/** Sets tcp_migrate_req for `reuse-port` (root only); returns a function that restores it, or undefined. */
function enableMigrate() {
  const before = readMigrate()
  if (before === undefined) return undefined
  try {
    writeFileSync(MIGRATE, '1')
  } catch {
    return undefined
  }
  return () => writeFileSync(MIGRATE, before)
}

function servers(workers) {
  return [
    { name: 'plain', label: 'one process', script: 'single.mjs', env: { ADAPTER: '0' } },
    {
      name: 'seed',
      label: `node:cluster by hand (round-robin), ${workers} workers`,
      script: 'seed.mjs',
      env: { WORKERS: String(workers) },
    },
    {
      name: 'round-robin',
      label: "shoal `balancing: 'round-robin'`",
      script: 'shoal.mjs',
      env: { WORKERS: String(workers), BALANCING: 'round-robin' },
    },
    {
      name: 'shared',
      label: "shoal `balancing: 'shared'` (default)",
      script: 'shoal.mjs',
      env: { WORKERS: String(workers), BALANCING: 'shared' },
    },
    {
      name: 'reuse-port',
      label: "shoal `balancing: 'reuse-port'`",
      script: 'shoal.mjs',
      env: { WORKERS: String(workers), BALANCING: 'reuse-port' },
      fixedPort: true,
    },
  ]
}

/** ApacheBench; resolves with its counts (it prints them also when interrupted by `signal`). */
function ab(url, { concurrency, requests, keepAlive = false, signal }) {
  const args = ['-q', '-r', '-c', String(concurrency), '-n', String(requests), ...(keepAlive ? ['-k'] : []), url]
  return new Promise((resolve) => {
    const child = spawn('ab', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c) => {
      out += c
    })
    child.stderr.on('data', (c) => {
      out += c
    })
    signal?.addEventListener('abort', () => child.kill('SIGINT'), { once: true })
    child.on('exit', () => {
      const num = (re) => Number(re.exec(out)?.[1] ?? Number.NaN)
      resolve({
        rps: num(/Requests per second:\s+([\d.]+)/),
        complete: num(/Complete requests:\s+(\d+)/),
        failed: num(/Failed requests:\s+(\d+)/),
        non2xx: Number(/Non-2xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0),
        p50Ms: num(/\s50%\s+(\d+)/),
        p99Ms: num(/\s99%\s+(\d+)/),
        aborted: out.split('\n').filter((l) => /^apr_/.test(l)),
      })
    })
  })
}

/** Requests each process served since `before` (from COUNT_DIR files), largest first. */
function servedSince(dir, before = {}) {
  const now = {}
  for (const pid of readdirSync(dir)) if (!pid.endsWith('.tmp')) now[pid] = Number(readFileSync(join(dir, pid), 'utf8') || 0)
  const delta = Object.entries(now)
    .map(([pid, n]) => n - (before[pid] ?? 0))
    .filter((n) => n > 0)
    .sort((a, b) => b - a)
  return { now, delta }
}

/**
 * Every server of one Node version is started at once and idles while another is measured. Each
 * (load, server) is measured `rounds` times, the servers in a rotated order each round, so drift and
 * the machine's other work hit them alike; the row is the median round, the busiest-worker share the
 * worst round.
 */
async function measureNode(node, s, log, loads) {
  const restore = enableMigrate() // for reuse-port; it changes nothing for the others while nothing closes
  const running = []
  try {
    for (const server of servers(s.workers)) {
      const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-count-'))
      const port = server.fixedPort ? await freePort() : 0
      const proc = await startServer(new URL(server.script, apps).pathname, {
        env: { FRAMEWORK: 'express', COUNT_DIR: dir, PORT: String(port), ...server.env },
        execPath: node.path,
      })
      running.push({ server, proc, dir })
      const balancing = proc.ready.balancing
      if (server.name !== 'plain' && server.name !== 'seed' && balancing !== server.name) {
        log(`[balancing] ${node.version} ${server.name}: not available here (ran '${balancing}'), skipped`)
        running.pop()
        proc.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    }
    const rows = []
    for (const l of loads) {
      const runs = new Map(running.map((r) => [r.server.name, []]))
      for (const r of running) {
        await ab(`${r.proc.address}${l.path}`, { concurrency: s.concurrency, requests: Math.min(2000, l.requests), keepAlive: l.keepAlive })
      }
      for (let round = 0; round < s.rounds; round++) {
        const order = running.map((_, i) => running[(i + round) % running.length])
        for (const r of order) {
          await sleep(300)
          const before = servedSince(r.dir).now
          const result = await ab(`${r.proc.address}${l.path}`, {
            concurrency: s.concurrency,
            requests: l.requests,
            keepAlive: l.keepAlive,
          })
          await sleep(300)
          const { delta } = servedSince(r.dir, before)
          const total = delta.reduce((a, b) => a + b, 0)
          runs.get(r.server.name).push({ ...result, processes: delta.length, busiestShare: total ? delta[0] / total : Number.NaN })
        }
      }
      for (const r of running) {
        const all = runs.get(r.server.name)
        const mid = [...all].sort((a, b) => a.rps - b.rps)[Math.floor(all.length / 2)]
        const worst = [...all].sort((a, b) => b.busiestShare - a.busiestShare)[0]
        const row = {
          node: node.version,
          server: r.server.name,
          label: r.server.label,
          load: l.name,
          ...mid,
          rpsRuns: all.map((x) => x.rps),
          failed: all.reduce((n, x) => n + x.failed, 0),
          aborted: all.flatMap((x) => x.aborted),
          processes: Math.min(...all.map((x) => x.processes)),
          busiestShare: worst.busiestShare,
        }
        log(
          `[balancing] ${node.version} ${l.name} ${r.server.name}: ${fmtInt(row.rps)} req/s (runs ${row.rpsRuns.map((x) => fmtInt(x)).join(', ')}), ` +
            `p99 ${row.p99Ms} ms, failed ${row.failed}, busiest worker ${fmt(row.busiestShare * 100, 0)}% (worst round)`,
        )
        rows.push(row)
      }
    }
    return rows
  } finally {
    for (const r of running) {
      r.proc.stop()
      rmSync(r.dir, { recursive: true, force: true })
    }
    restore?.()
  }
}

/** nginx with its default proxy settings (HTTP/1.0, no upstream keep-alive) in front of `upstreamPort`. */
async function startNginx(upstreamPort) {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-nginx-'))
  const port = await freePort()
  const temp = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `${t === 'body' ? 'client_body' : t}_temp_path ${dir}/${t};`)
    .join('\n  ')
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;\nmaster_process off;\nworker_processes 1;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
      `events { worker_connections 4096; }\nhttp {\n  access_log off;\n  ${temp}\n  server {\n    listen 127.0.0.1:${port};\n` +
      `    location / { proxy_pass http://127.0.0.1:${upstreamPort}; }\n  }\n}\n`,
  )
  const child = spawn('nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`http://127.0.0.1:${port}/`).then(
        () => true,
        () => false,
      )
    )
      break
    await sleep(50)
  }
  return {
    url: `http://127.0.0.1:${port}`,
    upstreamErrors: () => {
      try {
        return readFileSync(join(dir, 'error.log'), 'utf8')
          .split('\n')
          .filter((l) => l.includes('upstream')).length
      } catch {
        return 0
      }
    },
    stop: () => {
      child.kill('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A rolling reload (SIGUSR2) under ab without keep-alive, direct and behind nginx. */
async function reloadUnderLoad(server, node, s, log) {
  const out = []
  for (const via of ['direct', 'nginx']) {
    const port = await freePort()
    const restore = server.name === 'reuse-port' ? enableMigrate() : undefined
    let running
    let nginx
    try {
      running = await startServer(new URL(server.script, apps).pathname, {
        env: { FRAMEWORK: 'express', PORT: String(port), ...server.env },
        execPath: node.path,
      })
      if (server.env.BALANCING && running.ready.balancing !== server.env.BALANCING) return out
      nginx = via === 'nginx' ? await startNginx(port) : undefined
      const abort = new AbortController()
      const pending = ab(`${nginx ? nginx.url : running.address}/`, {
        concurrency: s.concurrency,
        requests: 5_000_000,
        signal: abort.signal,
      })
      await sleep(1500)
      process.kill(running.pid, 'SIGUSR2')
      const done = await running
        .waitFor((m) => m.ev === 'reload-done' || m.ev === 'reload-failed', 60_000, 'reload end')
        .catch(() => undefined)
      await sleep(Math.max(1000, s.reloadLoadS * 1000 - 1500 - (done?.durationMs ?? 0)))
      abort.abort()
      const r = await pending
      const row = {
        node: node.version,
        server: server.name,
        label: server.label,
        via,
        complete: r.complete,
        failed: r.failed + r.aborted.length,
        non2xx: r.non2xx,
        nginxUpstreamErrors: nginx?.upstreamErrors() ?? 0,
        reloadMs: done?.durationMs,
      }
      log(
        `[balancing] reload ${node.version} ${server.name} via ${via}: ${r.complete} ok, failed ${row.failed}, non-2xx ${r.non2xx}, nginx upstream errors ${row.nginxUpstreamErrors}`,
      )
      out.push(row)
    } finally {
      nginx?.stop()
      running?.stop()
      restore?.()
    }
  }
  return out
}

export async function run(log = console.error) {
  const s = settings()
  mkdirSync(nodesDir, { recursive: true })
  const nodes = nodeBinaries(s.majors, log)
  const cpuRouteMs = measureCpuRouteMs()
  const cases = []
  for (const [i, node] of nodes.entries()) {
    const loads = [
      { name: 'new connection per request', path: '/', requests: s.helloRequests, keepAlive: false },
      { name: 'keep-alive', path: '/', requests: s.helloRequests, keepAlive: true },
      // The CPU route on the machine's Node only: the spread of work, not the accept path.
      ...(i === 0
        ? [
            { name: 'cpu, new connection per request', path: '/cpu', requests: s.cpuRequests, keepAlive: false },
            { name: 'cpu, keep-alive', path: '/cpu', requests: s.cpuRequests, keepAlive: true },
          ]
        : []),
    ]
    cases.push(...(await measureNode(node, s, log, loads)))
  }
  // The machine's Node and the newest one (where 'reuse-port' can run).
  const reloads = []
  for (const node of new Set([nodes[0], nodes.at(-1)])) {
    for (const server of servers(s.workers).filter((x) => x.script === 'shoal.mjs'))
      reloads.push(...(await reloadUnderLoad(server, node, s, log)))
  }
  return { settings: s, nodes: nodes.map((n) => n.version), cpuRouteMs, cpuFib: CPU_FIB, cases, reloads, migrateReq: readMigrate() }
}

export function toMarkdown({ settings: s, nodes, cpuRouteMs, cpuFib, cases, reloads }) {
  const find = (node, load, server) => cases.find((c) => c.node === node && c.load === load && c.server === server)
  const rows = cases.map((c) => {
    const plain = find(c.node, c.load, 'plain')
    const seed = find(c.node, c.load, 'seed')
    const rr = find(c.node, c.load, 'round-robin')
    return [
      c.node,
      c.load,
      c.label,
      fmtInt(c.rps),
      c.server === 'plain' ? '1.00×' : ratio(c.rps, plain?.rps),
      c.server === 'plain' || c.server === 'seed' ? '' : ratio(c.rps, seed?.rps),
      ['shared', 'reuse-port'].includes(c.server) ? ratio(c.rps, rr?.rps) : '',
      String(c.p50Ms),
      String(c.p99Ms),
      c.server === 'plain' ? '' : `${fmt(c.busiestShare * 100, 0)}% (${c.processes} served)`,
      (c.rpsRuns ?? [c.rps]).map((x) => fmtInt(x)).join(', '),
      fmtInt(c.failed + c.aborted.length),
    ]
  })
  const reloadRows = reloads.map((r) => [
    r.node,
    r.label,
    r.via === 'nginx' ? 'nginx (default proxy settings) → shoal' : 'ab → shoal',
    fmtInt(r.complete),
    fmtInt(r.failed),
    fmtInt(r.non2xx),
    r.via === 'nginx' ? fmtInt(r.nginxUpstreamErrors) : '',
    r.reloadMs === undefined ? 'no reload-done' : fmtInt(r.reloadMs),
  ])
  return [
    '## 8. Balancing: how connections reach the workers',
    '',
    `ApacheBench (\`ab\`), ${s.concurrency} concurrent, Express hello route (${fmtInt(s.helloRequests)} requests) and the CPU route ` +
      `(fib(${cpuFib}), ${fmt(cpuRouteMs, 2)} ms per call; ${fmtInt(s.cpuRequests)} requests, machine's Node only), after a warmup ` +
      `of up to 2,000 requests. Every server of a Node version runs at once (idle while another is measured); each (load, server) ` +
      `is measured ${s.rounds} times, the servers in a rotated order each round: **req/s** is the median round (every round in ` +
      `**runs**), p50/p99 from that round. **new connection per request**: \`ab\` without \`-k\` (what nginx's default upstream, health checkers ` +
      `and webhooks do); **keep-alive**: \`ab -k\`. ${s.workers} workers. Node versions: ${nodes.join(', ')}. ` +
      '`reuse-port` runs only where shoal allows it (Node ≥ 22.12; the bench sets `net.ipv4.tcp_migrate_req = 1` for it as root). ' +
      'ab itself takes a share of the 2 cores, so 2× one process is out of reach. **busiest worker**: its share of the requests the ' +
      'cluster served in the most uneven round (50% is an even spread over 2).',
    '',
    table(
      [
        'Node',
        'load',
        'server',
        'req/s',
        'vs one process',
        'vs node:cluster',
        'vs round-robin',
        'p50 ms',
        'p99 ms',
        'busiest worker',
        'runs, req/s',
        'failed',
      ],
      rows,
    ),
    '',
    '### Rolling reload under a new connection per request',
    '',
    `\`ab -c $s.concurrency\` without keep-alive for about ${s.reloadLoadS} s, SIGUSR2 to the primary 1.5 s in; direct, and through nginx ` +
      'with its default proxy settings (HTTP/1.0 and a new upstream connection per request). Any failed request, non-2xx answer ' +
      "(an nginx 502) or line in nginx's error log about the upstream is a dropped request.",
    '',
    table(['Node', 'server', 'path', 'answered', 'failed', 'non-2xx', 'nginx upstream errors', 'reload ms'], reloadRows),
  ].join('\n')
}

if (isMain(import.meta.url)) {
  const result = await run()
  console.log(toMarkdown(result))
}
