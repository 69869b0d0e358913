import { describe, expect, it } from 'vitest'
import { isShoalMessage, parseWorkerMessage } from './protocol.js'

describe('parseWorkerMessage', () => {
  it('accepts well-formed messages', () => {
    expect(parseWorkerMessage({ shoal: 1, type: 'ready', address: 'http://127.0.0.1:1' })).toEqual({
      shoal: 1,
      type: 'ready',
      address: 'http://127.0.0.1:1',
    })
    expect(parseWorkerMessage({ shoal: 1, type: 'request', id: 3, cmd: 'echo', payload: [1] })).toMatchObject({ id: 3, cmd: 'echo' })
    expect(parseWorkerMessage({ shoal: 1, type: 'answer', id: 4, ok: true, value: 7 })).toMatchObject({ id: 4, ok: true, value: 7 })
    expect(parseWorkerMessage({ shoal: 1, type: 'answer', id: 4, ok: false, error: { code: 'X', message: 'y' } })).toMatchObject({
      ok: false,
      error: { code: 'X', message: 'y' },
    })
    expect(parseWorkerMessage({ shoal: 1, type: 'listen-failed', code: 'EADDRINUSE', message: 'port 3000 is already in use' })).toEqual({
      shoal: 1,
      type: 'listen-failed',
      code: 'EADDRINUSE',
      message: 'port 3000 is already in use',
    })
  })

  it.each([
    null,
    'ready',
    42,
    [],
    { type: 'ready' },
    { shoal: 2, type: 'ready', address: 'x' },
    { shoal: 1, type: 'nope' },
    { shoal: 1, type: 'ready' },
    { shoal: 1, type: 'ready', address: 'x'.repeat(100_000) },
    { shoal: 1, type: 'request', id: -1, cmd: 'x' },
    { shoal: 1, type: 'request', id: 1.5, cmd: 'x' },
    { shoal: 1, type: 'request', id: 1, cmd: { evil: true } },
    { shoal: 1, type: 'pong', seq: 1 },
    { shoal: 1, type: 'fatal', message: 7 },
    { shoal: 1, type: 'draining' },
    { shoal: 1, type: 'draining', deadlineMs: -5, fatal: false },
    { shoal: 1, type: 'answer', id: 1 },
    { shoal: 1, type: 'answer', id: -1, ok: true },
    { shoal: 1, type: 'answer', id: 1, ok: false, error: 'boom' },
    { shoal: 1, type: 'answer', id: 1, ok: false, error: { code: 5, message: 'x' } },
    { shoal: 1, type: 'listen-failed', message: 'x' },
  ])('returns null for %j', (message) => {
    expect(parseWorkerMessage(message)).toBeNull()
  })

  it('leaves the app’s own messages alone', () => {
    expect(isShoalMessage({ type: 'ready' })).toBe(false)
    expect(isShoalMessage({ shoal: 1, type: 'whatever' })).toBe(true)
  })
})
