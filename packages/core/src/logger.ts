/**
 * One logger interface, pino-compatible: `log.info({ slot: 1 }, 'worker ready')` or `log.info('msg')`.
 * Pass the app's pino (or Fastify's `app.log`) as `logger`; by default shoal writes readable lines
 * to stderr, or JSON lines with `logger: 'json'`.
 */
export interface LogFn {
  (obj: object, msg?: string): void
  (msg: string): void
}

export interface Logger {
  info: LogFn
  warn: LogFn
  error: LogFn
  debug: LogFn
  /** pino's: a logger whose every line carries `bindings`. */
  child?: (bindings: Record<string, unknown>) => Logger
  /** pino's: writes out what is buffered, then calls back. */
  flush?: (cb?: (err?: Error) => void) => void
}

type Level = 'debug' | 'info' | 'warn' | 'error'

function split(args: [object | string, string?]): { fields: Record<string, unknown>; msg: string } {
  const [first, second] = args
  if (typeof first === 'string') return { fields: {}, msg: first }
  return { fields: first as Record<string, unknown>, msg: second ?? '' }
}

function formatField(value: unknown): string {
  if (value instanceof Error) return JSON.stringify(value.stack ?? value.message)
  if (typeof value === 'string') return /^[\w.:/@-]+$/.test(value) ? value : JSON.stringify(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

type Write = (level: Level, fields: Record<string, unknown>, msg: string) => void

function makeLogger(write: Write, bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: Level): LogFn =>
    (...args: [object | string, string?]) => {
      const { fields, msg } = split(args)
      // The line's own fields first (a text line reads "what happened, then who"); bindings never overwrite them.
      const all: Record<string, unknown> = { ...fields }
      for (const [k, v] of Object.entries(bindings)) if (!(k in all)) all[k] = v
      write(level, all, msg)
    }
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => makeLogger(write, { ...bindings, ...more }),
  }
}

/**
 * A logger whose every line carries `bindings` (a worker's `workerId`, `slot`, `generation`): pino's
 * (and shoal's own) `child`, which already write `pid` themselves, or a wrapper that adds `pid` too.
 */
export function bindLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  if (typeof logger.child === 'function') return logger.child(bindings)
  const all = { ...bindings, pid: process.pid }
  const at =
    (fn: LogFn): LogFn =>
    (...args: [object | string, string?]) => {
      const [first, second] = args
      if (typeof first === 'string') fn(all, first)
      else fn({ ...all, ...first }, second)
    }
  return { debug: at(logger.debug), info: at(logger.info), warn: at(logger.warn), error: at(logger.error) }
}

/**
 * Writes out what the logger buffered (pino with an async destination), then calls `done`, at the
 * latest after `timeoutMs`. shoal's own loggers write synchronously: `done` runs at once.
 */
export function flushLogger(logger: Logger, done: () => void, timeoutMs = 1000): void {
  let called = false
  const once = () => {
    if (called) return
    called = true
    clearTimeout(timer)
    done()
  }
  const timer = setTimeout(once, timeoutMs)
  if (typeof logger.flush !== 'function') {
    once()
    return
  }
  try {
    logger.flush(() => once())
  } catch {
    once()
  }
}

const debugEnabled = /(^|,)\s*shoal\s*(,|$)/.test(process.env.DEBUG ?? '')

/** `shoal[1234] worker ready slot=0 pid=1240` */
export function textLogger(stream: NodeJS.WritableStream = process.stderr): Logger {
  return makeLogger((level, fields, msg) => {
    if (level === 'debug' && !debugEnabled) return
    const tail = Object.entries(fields)
      .map(([k, v]) => `${k}=${formatField(v)}`)
      .join(' ')
    const tag = level === 'info' ? '' : ` ${level.toUpperCase()}`
    stream.write(`shoal[${process.pid}]${tag} ${msg}${tail ? ` ${tail}` : ''}\n`)
  })
}

/** `{"level":"info","time":...,"pid":1234,"name":"shoal","msg":"worker ready","slot":0}` */
export function jsonLogger(stream: NodeJS.WritableStream = process.stderr): Logger {
  return makeLogger((level, fields, msg) => {
    if (level === 'debug' && !debugEnabled) return
    const record: Record<string, unknown> = { level, time: Date.now(), pid: process.pid, name: 'shoal', msg }
    for (const [k, v] of Object.entries(fields)) record[k] = v instanceof Error ? { message: v.message, stack: v.stack } : v
    let line: string
    try {
      line = JSON.stringify(record)
    } catch {
      line = JSON.stringify({ level, time: record.time, pid: process.pid, name: 'shoal', msg })
    }
    stream.write(`${line}\n`)
  })
}

export const silentLogger: Logger = makeLogger(() => {})

export type LoggerOption = Logger | 'text' | 'json' | 'silent'

export function resolveLogger(option: LoggerOption | undefined): Logger {
  if (option === undefined || option === 'text') return textLogger()
  if (option === 'json') return jsonLogger()
  if (option === 'silent') return silentLogger
  return ownPidOnce(option)
}

/**
 * The app's logger (pino) writes this process's `pid` on every line already: a second `pid` key is
 * dropped, and another process's pid (a worker's, logged by the primary) is written as `workerPid`.
 */
function ownPidOnce(logger: Logger): Logger {
  const at =
    (level: Level): LogFn =>
    (...args: [object | string, string?]) => {
      const [first, msg] = args
      if (typeof first !== 'object' || first === null || !('pid' in first)) return logger[level](...(args as [object, string?]))
      const { pid, ...rest } = first as Record<string, unknown>
      const fields = pid === process.pid ? rest : { ...rest, workerPid: pid }
      return msg === undefined ? logger[level](fields) : logger[level](fields, msg)
    }
  const wrapped: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
  // Keep what makes it the app's logger: its children (bindings) and its flush on a forced exit.
  const { child, flush } = logger
  if (typeof child === 'function') wrapped.child = (bindings) => ownPidOnce(child.call(logger, bindings))
  if (typeof flush === 'function') wrapped.flush = (cb) => flush.call(logger, cb)
  return wrapped
}

export function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return ['info', 'warn', 'error', 'debug'].every((k) => typeof v[k] === 'function')
}
