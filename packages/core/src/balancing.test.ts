import { createServer, type Server } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { decideBalancing, defaultBalancing, listenOnOwnSocket, nodeHasReusePort } from './balancing.js'
import { resolveOptions } from './options.js'

const linux = { platform: 'linux' as const, nodeVersion: '24.11.0', migrateReq: '1' }

describe('decideBalancing', () => {
  it('runs shared and round-robin everywhere, as asked', () => {
    for (const platform of ['linux', 'darwin', 'win32'] as const) {
      expect(decideBalancing('shared', { ...linux, platform })).toEqual({ requested: 'shared', mode: 'shared' })
      expect(decideBalancing('round-robin', { ...linux, platform })).toEqual({ requested: 'round-robin', mode: 'round-robin' })
    }
  })

  it('runs reuse-port on Linux with a Node that has it and tcp_migrate_req = 1', () => {
    expect(decideBalancing('reuse-port', linux)).toEqual({ requested: 'reuse-port', mode: 'reuse-port' })
  })

  it.each([
    [{ ...linux, platform: 'darwin' as const }, /darwin has no SO_REUSEPORT/],
    [{ ...linux, nodeVersion: '20.19.0' }, /Node 20\.19\.0 has no reusePort/],
    [{ ...linux, nodeVersion: '22.11.0' }, /Node 22\.11\.0 has no reusePort/],
    [{ ...linux, migrateReq: '0' }, /tcp_migrate_req is 0: a draining worker would reset/],
    [{ ...linux, migrateReq: undefined }, /tcp_migrate_req is unreadable/],
  ])('falls back to round-robin and says why (%o)', (host, why) => {
    const d = decideBalancing('reuse-port', host)
    expect(d.mode).toBe('round-robin')
    expect(d.unavailable).toMatch(why)
  })

  it('knows which Node versions have reusePort', () => {
    expect(['20.19.0', '22.11.0', '23.0.0'].map(nodeHasReusePort)).toEqual([false, false, false])
    expect(['22.12.0', '23.1.0', '24.0.0', '26.1.0'].map(nodeHasReusePort)).toEqual([true, true, true, true])
  })

  it('defaults to shared, and to round-robin on Windows', () => {
    expect(defaultBalancing('linux')).toBe('shared')
    expect(defaultBalancing('darwin')).toBe('shared')
    expect(defaultBalancing('win32')).toBe('round-robin')
  })
})

describe('the balancing option', () => {
  it('takes the three modes and defaults by platform', () => {
    expect(resolveOptions({ workers: 1 }).balancing).toBe(defaultBalancing(process.platform))
    for (const b of ['shared', 'round-robin', 'reuse-port'] as const) expect(resolveOptions({ workers: 1, balancing: b }).balancing).toBe(b)
  })

  it('rejects anything else, naming the option, the modes and what it got', () => {
    expect(() => resolveOptions({ workers: 1, balancing: 'rr' })).toThrow(
      /`balancing` to be 'shared', 'round-robin' or 'reuse-port', got `"rr"`/,
    )
  })
})

describe('listenOnOwnSocket', () => {
  const servers: Server[] = []
  afterEach(() => {
    for (const s of servers.splice(0)) s.close()
  })

  it('refuses port 0 with an error on the server, as a listen error would come', async () => {
    const server = createServer()
    servers.push(server)
    listenOnOwnSocket(server)
    const err = await new Promise<Error>((resolve) => {
      server.once('error', resolve)
      server.listen({ port: 0, host: '127.0.0.1' })
    })
    expect(err.message).toMatch(/needs a fixed port, got 0/)
  })

  it.skipIf(process.platform !== 'linux' || !nodeHasReusePort(process.versions.node))(
    'lets two servers bind one port, whichever way listen is called',
    async () => {
      const probe = createServer()
      const port = await new Promise<number>((r) => probe.listen(0, '127.0.0.1', () => r((probe.address() as { port: number }).port)))
      await new Promise((r) => probe.close(r))
      const a = createServer()
      const b = createServer()
      servers.push(a, b)
      listenOnOwnSocket(a)
      listenOnOwnSocket(b)
      await new Promise<void>((r) => a.listen({ port, host: '127.0.0.1' }, r))
      await new Promise<void>((r) => b.listen(port, '127.0.0.1', r))
      expect([a.address(), b.address()].map((x) => (x as { port: number }).port)).toEqual([port, port])
    },
  )
})
