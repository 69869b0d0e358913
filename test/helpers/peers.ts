// Foreign peers a test drives for real: ApacheBench (`ab`) as the load generator that opens a
// connection per request, nginx as the reverse proxy with its default upstream settings (HTTP/1.0,
// a new connection per request). Both are Debian packages that `.ci/run` installs. Every process is
// started with spawn (so signals reach it) and killed by pid in afterEach, even when a test failed.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach } from 'vitest'

const started = new Set<{ child: ChildProcess; dir?: string }>()

afterEach(() => {
  for (const s of started) {
    s.child.kill('SIGKILL')
    if (s.dir) rmSync(s.dir, { recursive: true, force: true })
  }
  started.clear()
})

/** The absolute path of a command, or undefined. */
export function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

/** A peer the suite needs: missing is a failure in CI (`.ci/run` installs it), a visible skip reason elsewhere. */
export function requirePeer(command: string, debianPackage: string): string | undefined {
  const path = which(command)
  if (!path && process.env.CI) throw new Error(`\`${command}\` is not installed (Debian package ${debianPackage}; .ci/run installs it)`)
  return path
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

export interface AbResult {
  complete: number
  failed: number
  non2xx: number
  /** ab's own error lines (`apr_socket_recv: Connection reset by peer (104)`): it stops at the first. */
  errors: string[]
  output: string
}

/**
 * ApacheBench without keep-alive (a new connection per request) until `stop()`, which interrupts it
 * like Ctrl+C: ab prints what completed so far; requests still in flight at that moment count as
 * neither complete nor failed. Bounded by `maxS` and `maxRequests` in any case.
 */
export function ab(url: string, { concurrency = 50, maxS = 60, maxRequests = 1_000_000 } = {}) {
  // -l: the body's length may change (a pid goes from 4 to 5 digits after a reload); without it ab
  // counts that as a failed request. -r: a receive error is counted, not the end of the run.
  const child = spawn('ab', ['-q', '-r', '-l', '-c', String(concurrency), '-n', String(maxRequests), '-t', String(maxS), url], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const entry = { child }
  started.add(entry)
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    output += c
  })
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    output += c
  })
  const done = new Promise<AbResult>((resolve) => {
    child.once('exit', () => {
      started.delete(entry)
      const number = (label: RegExp) => Number(label.exec(output)?.[1] ?? 0)
      resolve({
        complete: number(/Complete requests:\s+(\d+)/),
        failed: number(/Failed requests:\s+(\d+)/),
        non2xx: number(/Non-2xx responses:\s+(\d+)/),
        errors: output.split('\n').filter((l) => /^apr_|error/i.test(l)),
        output,
      })
    })
  })
  return {
    /** Interrupts ab and resolves with its counts. */
    stop: () => {
      child.kill('SIGINT')
      return done
    },
    done,
  }
}

export interface Nginx {
  url: string
  /** The error log so far (nginx writes a line for every failed upstream request). */
  errorLog(): string
  stop(): void
}

/**
 * nginx in front of 127.0.0.1:`upstreamPort` with its default proxy settings: HTTP/1.0 to the
 * upstream and no upstream keep-alive, so every request opens a new connection to the app.
 */
export async function startNginx(upstreamPort: number): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-nginx-'))
  const port = await freePort()
  const conf = join(dir, 'nginx.conf')
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://127.0.0.1:${upstreamPort}; }
  }
}
`,
  )
  const child = spawn('nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  const entry = { child, dir }
  started.add(entry)
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    stderr += c
  })
  const errorLog = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8')
    } catch {
      return ''
    }
  }
  // Up when it answers (a 502 is an answer: the proxy listens).
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr}\n${errorLog()}`)
    const up = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    )
    if (up) break
    if (Date.now() > deadline) throw new Error(`nginx did not answer on ${port} within 10 s: ${stderr}\n${errorLog()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url: `http://127.0.0.1:${port}`,
    errorLog,
    stop: () => {
      child.kill('SIGKILL')
      started.delete(entry)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** LISTEN sockets on `port` (IPv4 and IPv6), by socket inode. */
export function listeningInodes(port: number): string[] {
  const inodes: string[] = []
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try {
      text = readFileSync(file, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      const local = cols[1]
      if (!local || cols[3] !== '0A') continue
      if (Number.parseInt(local.split(':').at(-1) ?? '', 16) === port && cols[9]) inodes.push(cols[9])
    }
  }
  return inodes
}

/** The socket inodes a process holds open. */
export function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>()
  let fds: string[] = []
  try {
    fds = readdirSync(`/proc/${pid}/fd`)
  } catch {
    return inodes
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m?.[1]) inodes.add(m[1])
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}
