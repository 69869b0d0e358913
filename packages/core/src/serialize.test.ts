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

describe('jsonProblem on values that throw while read', () => {
  it('never throws: a throwing getter or Proxy trap is named with its path', () => {
    const getter = {
      a: [
        {
          get count(): number {
            throw new Error('getter exploded')
          },
        },
      ],
    }
    expect(jsonProblem(getter)).toBe('`.a[0].count` threw while it was read: getter exploded')
    const trap = new Proxy(
      {},
      {
        getPrototypeOf() {
          throw new Error('trapped')
        },
      },
    )
    expect(jsonProblem({ p: trap })).toBe('`.p` threw while it was read: trapped')
    const { proxy, revoke } = Proxy.revocable({}, {})
    revoke()
    expect(jsonProblem(proxy)).toMatch(/^the value threw while it was read: /)
    const weird = {
      get x(): number {
        throw Object.assign(Object.create(null), {
          toString: () => {
            throw new Error('no')
          },
        })
      },
    }
    expect(jsonProblem(weird)).toBe('`.x` threw while it was read: {}')
  })
})
