// Starts fixture scripts as real processes (their own process group, so a test can hit the whole
// group like a terminal's Ctrl+C) and reads the JSON events they print. Every process a test
// started is SIGKILLed by group in afterEach, even when the test failed.
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterEach } from 'vitest'

export interface FixtureEvent {
  ev: string
  [key: string]: unknown
}

const live = new Set<Fixture>()

afterEach(() => {
  for (const f of live) f.destroy()
  live.clear()
})

export function fixturePath(name: string): string {
  return fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url))
}

export class Fixture {
  readonly child: ChildProcess
  readonly pid: number
  readonly events: FixtureEvent[] = []
  stdout = ''
  stderr = ''
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly #waiters = new Set<() => void>()
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined

  /** `wrap` runs the fixture under another command: `['taskset', '-c', '0']`. */
  constructor(name: string, env: Record<string, string> = {}, wrap: string[] = []) {
    const script = name.startsWith('/') ? name : fixturePath(name)
    const [command = process.execPath, ...rest] = [...wrap, process.execPath]
    this.child = spawn(command, [...rest, script], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...env },
    })
    if (this.child.pid === undefined) throw new Error(`could not start ${name}`)
    this.pid = this.child.pid
    live.add(this)
    let buffered = ''
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk
      buffered += chunk
      const lines = buffered.split('\n')
      buffered = lines.pop() ?? ''
      for (const line of lines) {
        if (line.startsWith('@@')) this.events.push(JSON.parse(line.slice(2)) as FixtureEvent)
      }
      this.#wake()
    })
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk
      this.#wake()
    })
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#exit = { code, signal }
        resolve(this.#exit)
        this.#wake()
      })
    })
    this.child.on('error', () => {})
  }

  #wake(): void {
    for (const w of this.#waiters) w()
  }

  /** Resolves with the first value `check` returns that is not undefined; rejects after `timeoutMs` with the output so far. */
  waitUntil<T>(check: () => T | undefined, what: string, timeoutMs = 20_000, { failOnExit = true } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const test = () => {
        const value = check()
        if (value !== undefined) {
          cleanup()
          resolve(value)
        } else if (this.#exit && failOnExit) {
          cleanup()
          reject(new Error(`fixture exited (${JSON.stringify(this.#exit)}) while waiting for ${what}\n${this.output()}`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.output()}`))
      }, timeoutMs)
      // Output wakes it at once; the poll covers conditions outside the fixture (a client's counters).
      const poll = setInterval(test, 25)
      const cleanup = () => {
        clearTimeout(timer)
        clearInterval(poll)
        this.#waiters.delete(test)
      }
      this.#waiters.add(test)
      test()
    })
  }

  /** The `n`-th (1-based) event named `ev` that matches `where`. */
  event(ev: string, where: (e: FixtureEvent) => boolean = () => true, n = 1, timeoutMs?: number): Promise<FixtureEvent> {
    return this.waitUntil(() => this.events.filter((e) => e.ev === ev && where(e))[n - 1], `event ${ev} #${n}`, timeoutMs)
  }

  count(ev: string, where: (e: FixtureEvent) => boolean = () => true): number {
    return this.events.filter((e) => e.ev === ev && where(e)).length
  }

  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<true> {
    return this.waitUntil(() => (pattern.test(this.output()) ? true : undefined), `output ${pattern}`, timeoutMs)
  }

  async waitForExit(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    await this.waitUntil(() => this.#exit, 'exit', timeoutMs, { failOnExit: false })
    return this.exited
  }

  /** Sends a command to the fixture over IPC (it answers with an `@@{"ev":"reply"}` event). */
  command(cmd: string, args: Record<string, unknown> = {}): void {
    this.child.send({ cmd, ...args })
  }

  async call(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<FixtureEvent> {
    const before = this.count('reply', (e) => e.cmd === cmd)
    this.command(cmd, args)
    return this.event('reply', (e) => e.cmd === cmd, before + 1, timeoutMs)
  }

  /** Signals the primary alone. */
  signal(signal: NodeJS.Signals): void {
    process.kill(this.pid, signal)
  }

  /** Signals the whole process group, as a terminal's Ctrl+C does. */
  signalGroup(signal: NodeJS.Signals): void {
    process.kill(-this.pid, signal)
  }

  output(): string {
    return `--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`
  }

  destroy(): void {
    try {
      process.kill(-this.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
