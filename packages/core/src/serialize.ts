/**
 * Values that cross IPC must survive JSON (cluster's default serialization) unchanged.
 * Anything JSON would silently drop or mangle is rejected with the path to the culprit.
 */

/** Returns null when `value` is JSON-safe, otherwise why not, e.g. "`.users[2].id` is a BigInt". */
export function jsonProblem(value: unknown, path = '', seen = new Set<object>()): string | null {
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
  try {
    if (Array.isArray(obj)) {
      for (let i = 0; i < obj.length; i++) {
        const problem = jsonProblem(obj[i], `${path}[${i}]`, seen)
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
      const problem = jsonProblem((obj as Record<string, unknown>)[key], `${path}.${key}`, seen)
      if (problem) return problem
    }
    return null
  } finally {
    seen.delete(obj)
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
