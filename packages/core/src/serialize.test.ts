import { describe, expect, it } from 'vitest'
import { deepFreeze, jsonProblem } from './serialize.js'

describe('jsonProblem', () => {
  it('accepts JSON values', () => {
    expect(jsonProblem({ a: [1, 'x', null, true, { b: 2.5 }] })).toBeNull()
    expect(jsonProblem(Object.create(null))).toBeNull()
  })

  it('names what cannot cross IPC, with its path', () => {
    const circular: Record<string, unknown> = {}
    circular.self = circular
    expect(jsonProblem({ users: [{ id: 10n }] })).toBe('`.users[0].id` is a BigInt (convert it to a number or string)')
    expect(jsonProblem(() => 1)).toBe('the value is a function')
    expect(jsonProblem({ s: Symbol('x') })).toBe('`.s` is a symbol')
    expect(jsonProblem(circular)).toBe('`.self` is circular')
    expect(jsonProblem({ n: Number.NaN })).toContain('NaN')
    expect(jsonProblem({ d: new Date(0) })).toContain('Date')
    expect(jsonProblem(new Map())).toContain('Map')
    expect(jsonProblem(undefined)).toContain('undefined')
  })

  it('accepts the same object twice when it is not circular', () => {
    const shared = { x: 1 }
    expect(jsonProblem({ a: shared, b: shared })).toBeNull()
  })
})

describe('deepFreeze', () => {
  it('freezes nested values', () => {
    const v = deepFreeze({ a: { b: [1] } })
    expect(Object.isFrozen(v.a.b)).toBe(true)
  })
})
