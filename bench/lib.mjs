// Helpers every benchmark module shares: spawning server processes that are always killed, free
// ports, an autocannon wrapper, and small statistics. Plain ESM, no build step.
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { pathToFileURL } from 'node:url'
import autocannon from 'autocannon'
import { CPU_FIB, fib, HOST } from './apps/common.mjs'

export { CPU_FIB, fib, HOST, sleep } from './apps/common.mjs'

/** QUICK=1 shortens every duration so a module can be checked in seconds. */
export const QUICK = process.env.QUICK === '1'

/** True when `importMetaUrl` is the script node was started with (a module run on its own). */
export function isMain(importMetaUrl) {
  return process.argv[1] !== undefined && importMetaUrl === pathToFileURL(process.argv[1]).href
}

// ---- processes ------------------------------------------------------------------------------

const groups = new Set()

/** SIGKILLs a whole process group (the server and anything it forked). Never throws. */
export function killGroup(pid) {
  groups.delete(pid)
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

function killAll() {
  for (const pid of [...groups]) killGroup(pid)
}
process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll()
    process.exit(130)
  })
}

/**
 * Spawns `node <script>` in its own process group and collects its stdout JSON lines. Resolves once
 * a line carries `address` (or `readyKey`), rejects if the process exits first or after `timeoutMs`.
 * The process is killed by `stop()`, and in any case when this process exits.
 */
export async function startServer(script, { env = {}, timeoutMs = 30_000, readyKey = 'address', execPath = process.execPath } = {}) {
  const child = spawn(execPath, [script], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  })
  groups.add(child.pid)
  const server = new ServerProcess(child)
  try {
    const line = await server.waitFor((m) => m[readyKey] !== undefined, timeoutMs, `${script} ready`)
    server.address = line.address
    server.ready = line
    return server
  } catch (err) {
    server.stop()
    throw err
  }
}

class ServerProcess {
  constructor(child) {
    this.child = child
    this.pid = child.pid
    this.messages = []
    this.waiters = new Set()
    this.stderr = ''
    this.exited = false
    /** From the process's real 'exit' event: code, signal, and performance.now() when it fired. */
    this.exit = undefined
    this.exitWaiters = new Set()
    let buffered = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk) => {
      buffered += chunk
      let nl = buffered.indexOf('\n')
      while (nl !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        nl = buffered.indexOf('\n')
        this.#onLine(line)
      }
    })
    child.stderr.setEncoding('utf8')
    child.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk).slice(-4000)
    })
    child.once('exit', (code, signal) => {
      // The group stays registered: workers it forked may outlive it until stop() kills the group.
      this.exited = true
      this.exit = { code, signal, at: performance.now() }
      for (const resolve of this.exitWaiters) resolve(this.exit)
      this.exitWaiters.clear()
      for (const w of this.waiters) w.reject(new Error(`process exited (${signal ?? code}) while waiting for ${w.what}\n${this.stderr}`))
      this.waiters.clear()
    })
  }

  #onLine(line) {
    if (!line.startsWith('{')) return
    let message
    try {
      message = JSON.parse(line)
    } catch {
      return
    }
    message.receivedAt = performance.now()
    this.messages.push(message)
    for (const w of this.waiters) {
      if (w.match(message)) {
        this.waiters.delete(w)
        w.resolve(message)
      }
    }
  }

  /** Resolves with the first stdout message (seen so far or later) that matches. */
  waitFor(match, timeoutMs, what = 'a message') {
    const seen = this.messages.find(match)
    if (seen) return Promise.resolve(seen)
    if (this.exited) return Promise.reject(new Error(`process exited before ${what}\n${this.stderr}`))
    return new Promise((resolve, reject) => {
      const waiter = { match, what, resolve: undefined, reject: undefined }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.stderr}`))
      }, timeoutMs)
      waiter.resolve = (m) => {
        clearTimeout(timer)
        resolve(m)
      }
      waiter.reject = (e) => {
        clearTimeout(timer)
        reject(e)
      }
      this.waiters.add(waiter)
    })
  }

  /** Resolves with `{ code, signal, at }` from the 'exit' event, or `undefined` after `timeoutMs`. */
  waitExit(timeoutMs) {
    if (this.exit) return Promise.resolve(this.exit)
    return new Promise((resolve) => {
      const done = (exit) => {
        clearTimeout(timer)
        this.exitWaiters.delete(done)
        resolve(exit)
      }
      const timer = setTimeout(() => done(undefined), timeoutMs)
      this.exitWaiters.add(done)
    })
  }

  signal(name) {
    process.kill(this.pid, name)
  }

  stop() {
    killGroup(this.pid)
  }
}

/** State letter of a live process from /proc/<pid>/stat (Linux), `undefined` if there is none. */
function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state, ppid: Number(ppid) }
  } catch {
    return undefined
  }
}

/** True while `pid` runs (a zombie, dead but not reaped yet, does not count). */
export function isAlive(pid) {
  const stat = procStat(pid)
  return stat !== undefined && stat.state !== 'Z'
}

/**
 * Pids of the live (non-zombie) children of `pid`, read from /proc (Linux): a cluster's current
 * workers are its primary's children. Starts no process.
 */
export function childPids(pid) {
  const children = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = procStat(name)
    if (stat && stat.ppid === pid && stat.state !== 'Z') children.push(Number(name))
  }
  return children
}

/** Runs `fn(server)` with a started server and always kills its process group afterwards. */
export async function withServer(script, options, fn) {
  const server = await startServer(script, options)
  try {
    return await fn(server)
  } finally {
    server.stop()
  }
}

/** A port that was free a moment ago on 127.0.0.1 (for servers that must keep one port across restarts). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, HOST, () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

// ---- load -----------------------------------------------------------------------------------

/**
 * autocannon with keep-alive connections for `durationS` seconds. `onStart(instance)` can attach
 * listeners ('response', 'reqError'); `setupClient(client)` sees each connection's client (its
 * 'headers' event). Resolves to autocannon's result.
 */
export function load(url, { connections = 50, durationS = 5, onStart, setupClient } = {}) {
  return new Promise((resolve, reject) => {
    const opts = { url, connections, duration: durationS, timeout: 10 }
    if (setupClient) opts.setupClient = setupClient
    const instance = autocannon(opts, (err, result) => {
      if (err) reject(err)
      else resolve(result)
    })
    onStart?.(instance)
  })
}

/** What a run counted as failed: non-2xx responses plus errors (autocannon counts a timeout as an error too). */
export function failures(result) {
  return result.non2xx + result.errors
}

/** Requests per second over the whole run (responses of any status / duration). */
export function rps(result) {
  return result.requests.total / result.duration
}

// ---- statistics and formatting --------------------------------------------------------------

export function median(values) {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Nearest-rank percentile. */
export function percentile(values, p) {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length) - 1
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]
}

export function fmtInt(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a'
}

export function fmt(n, digits = 2) {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a'
}

export function ratio(a, b, digits = 2) {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(digits)}×` : 'n/a'
}

export function mb(bytes) {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/** A markdown table from a header row and rows of cells. */
export function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

/** Median time of one fib(CPU_FIB) call in this process, so the report says what the CPU route costs here. */
export function measureCpuRouteMs(samples = 50) {
  const times = []
  for (let i = 0; i < samples; i++) {
    const t = performance.now()
    fib(CPU_FIB)
    times.push(performance.now() - t)
  }
  return median(times)
}

/**
 * A second load client for cross-checks: `connections` loops of `fetch` (undici, keep-alive) until
 * `durationS` passed. Unlike autocannon it honors `Connection: close` (it opens a new connection
 * instead of writing the next request on a socket the server is closing), as real clients do.
 * Calls `onOutcome(status | undefined, error | undefined)` per request.
 */
export async function fetchLoad(url, { connections = 50, durationS = 5, timeoutMs = 10_000, onOutcome } = {}) {
  const started = performance.now()
  const until = started + durationS * 1000
  const totals = { requests: 0, ok: 0, non2xx: 0, errors: 0, errorCodes: {} }
  const loop = async () => {
    while (performance.now() < until) {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
        await res.arrayBuffer()
        totals.requests++
        if (res.status >= 200 && res.status < 300) totals.ok++
        else totals.non2xx++
        onOutcome?.(res.status, undefined)
      } catch (err) {
        totals.errors++
        const code = err.cause?.code ?? err.code ?? err.name
        totals.errorCodes[code] = (totals.errorCodes[code] ?? 0) + 1
        onOutcome?.(undefined, err)
      }
    }
  }
  await Promise.all(Array.from({ length: connections }, loop))
  return { ...totals, duration: (performance.now() - started) / 1000 }
}
