import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { LineSplitter, MAX_LINE_BYTES, relayLines } from './relay.js'

describe('LineSplitter', () => {
  it('returns only complete lines and keeps the rest for later', () => {
    const s = new LineSplitter()
    expect(s.push(Buffer.from('{"a":'))).toBeUndefined()
    expect(s.push(Buffer.from('1}\n{"b"'))?.toString()).toBe('{"a":1}\n')
    expect(s.push(Buffer.from(':2}\n{"c":3}\n'))?.toString()).toBe('{"b":2}\n{"c":3}\n')
    expect(s.end()).toBeUndefined()
  })

  it('passes a runaway line on once it is too long, and the tail at the end', () => {
    const s = new LineSplitter()
    expect(s.push(Buffer.alloc(MAX_LINE_BYTES, 0x61))?.length).toBe(MAX_LINE_BYTES)
    s.push(Buffer.from('tail'))
    expect(s.end()?.toString()).toBe('tail')
  })
})

describe('relayLines', () => {
  it('writes whole lines, one write per chunk, and the last partial line on end', async () => {
    const from = new PassThrough()
    const writes: string[] = []
    const to = new PassThrough()
    to.on('data', (b: Buffer) => writes.push(b.toString()))
    relayLines(from, to)
    from.write('x'.repeat(5000))
    from.write(`${'y'.repeat(5000)}\nz`)
    from.end()
    await new Promise((r) => setImmediate(r))
    expect(writes).toEqual([`${'x'.repeat(5000)}${'y'.repeat(5000)}\n`, 'z'])
  })
})
