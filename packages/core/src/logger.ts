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

function makeLogger(write: (level: Level, fields: Record<string, unknown>, msg: string) => void): Logger {
  const at =
    (level: Level): LogFn =>
    (...args: [object | string, string?]) => {
      const { fields, msg } = split(args)
      write(level, fields, msg)
    }
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
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
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

export function isLogger(value: unknown): value is Logger {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return ['info', 'warn', 'error', 'debug'].every((k) => typeof v[k] === 'function')
}
