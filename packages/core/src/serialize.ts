/**
 * Values that cross IPC must survive JSON (cluster's default serialization) unchanged.
 * Anything JSON would silently drop or mangle is rejected with the path to the culprit.
 */
import { errorMessage } from './errors.js'

/**
 * Returns null when `value` is JSON-safe, otherwise why not, e.g. "`.users[2].id` is a BigInt".
 * Never throws: a getter or a Proxy trap that throws while it is read is a problem like any other.
 */
export function jsonProblem(value: unknown): string | null {
  // Most values are fine: check without building a path for every node (a metrics snapshot has
  // thousands), and walk again naming the spot only when something is wrong.
  try {
    if (isJsonSafe(value, new Set())) return null
  } catch {
    // a getter or a Proxy trap threw: the walk below names it
  }
  return problemAt(value, '', new Set())
}

function isJsonSafe(value: unknown, seen: Set<object>): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true
    case 'number':
      return Number.isFinite(value)
    case 'object':
      break
    default:
      return false
  }
  if (value === null) return true
  if (seen.has(value)) return false
  seen.add(value)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isJsonSafe(value[i], seen)) return false
  } else {
    const proto = Object.getPrototypeOf(value)
    if (proto !== Object.prototype && proto !== null) return false
    const record = value as Record<string, unknown>
    for (const key of Object.keys(record)) if (!isJsonSafe(record[key], seen)) return false
  }
  seen.delete(value)
  return true
}

function problemAt(value: unknown, path: string, seen: Set<object>): string | null {
  const at = path === '' ? 'the value' : `\`${path}\``
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return null
    case 'number':
      return Number.isFinite(value) ? null : `${at} is ${value} (JSON turns it into null)`
    case 'bigint':
      return `${at} is a BigInt (convert it to a number or string)`
    case 'symbol':
      return `${at} is a symbol`
    case 'function':
      return `${at} is a function`
    case 'undefined':
      return `${at} is undefined (JSON drops it; use null)`
  }
  if (value === null) return null
  const obj = value as object
  if (seen.has(obj)) return `${at} is circular`
  seen.add(obj)
  // Reading a property runs user code (getters, Proxy traps); whatever it throws names the spot.
  let reading = path
  try {
    if (Array.isArray(obj)) {
      for (let i = 0; i < obj.length; i++) {
        reading = `${path}[${i}]`
        const problem = problemAt(obj[i], reading, seen)
        if (problem) return problem
      }
      return null
    }
    const proto = Object.getPrototypeOf(obj)
    if (proto !== Object.prototype && proto !== null) {
      const kind = (obj as { constructor?: { name?: string } }).constructor?.name ?? 'object'
      const hint = obj instanceof Date ? '; send date.toISOString() or getTime()' : ''
      return `${at} is a ${kind}, not a plain object or array${hint}`
    }
    for (const key of Object.keys(obj)) {
      reading = `${path}.${key}`
      const problem = problemAt((obj as Record<string, unknown>)[key], reading, seen)
      if (problem) return problem
    }
    return null
  } catch (err) {
    return `${reading === '' ? 'the value' : `\`${reading}\``} threw while it was read: ${errorMessage(err)}`
  } finally {
    seen.delete(obj)
  }
}

/**
 * The JSON text a value crosses IPC as, or why it cannot. Never throws: a getter may pass
 * `jsonProblem` and throw on the second read, the one `JSON.stringify` makes.
 */
export function encodeJson(value: unknown): { ok: true; json: string } | { ok: false; problem: string } {
  const problem = jsonProblem(value)
  if (problem) return { ok: false, problem }
  try {
    return { ok: true, json: JSON.stringify(value) }
  } catch (err) {
    return { ok: false, problem: `the value threw while it was serialized: ${errorMessage(err)}` }
  }
}

/** Deep-freezes a freshly parsed JSON value so no request can mutate what every request shares. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
