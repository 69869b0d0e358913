// Adapter options are validated where they are given, with clusteredListen's messages: a bad
// clusterPlugin option fails the registration (the app never starts), a bad clustered() option
// throws at the call. Never a server that runs without drain or signal handling.
import { codes, runCluster, ShoalError } from '@shoal/core'
import { clustered } from '@shoal/express'
import { clusterPlugin } from '@shoal/fastify'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

/** The message clusteredListen / runCluster gives for the same option. */
async function clusterMessage(options: Record<string, unknown>): Promise<string> {
  const err = await runCluster({ workers: 0, ...options }).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(ShoalError)
  return (err as ShoalError).message
}

const healthCases: [Record<string, unknown>, string][] = [
  [{ readinessPath: 'readyz' }, 'Expected `readinessPath` to be a path starting with \'/\', got `"readyz"`'],
  [{ livenessPath: 5 }, "Expected `livenessPath` to be a path starting with '/', got `5`"],
  [{ readinesPath: '/readyz' }, 'Expected `readinesPath` to be a known option (readinessPath, livenessPath'],
]

describe('clusterPlugin options', () => {
  it.each([
    [{ shutdownTimeoutMs: -1 }],
    [{ idleSocketGraceMs: 'soon' }],
    [{ signals: 'yes' }],
    [{ readinessDelayMs: 1.5 }],
    [{ onShutdown: 42 }],
  ])('%j rejects the registration with clusteredListen’s message', async (options) => {
    const app = Fastify()
    const registered = app.register(clusterPlugin, options as never)
    await expect(registered).rejects.toMatchObject({ code: codes.SHOAL_ERR_INVALID_OPTION, message: await clusterMessage(options) })
    await expect(app.ready()).rejects.toBeInstanceOf(ShoalError)
  })

  it.each(healthCases)('%j rejects the registration by name', async (options, message) => {
    const app = Fastify()
    await expect(app.register(clusterPlugin, options as never)).rejects.toMatchObject({
      code: codes.SHOAL_ERR_INVALID_OPTION,
      message: expect.stringContaining(message),
    })
  })

  it('accepts its own options and Fastify’s register options', async () => {
    const app = Fastify()
    await app.register(clusterPlugin, { signals: false, shutdownTimeoutMs: 1000, readinessPath: '/readyz', prefix: '/x', logLevel: 'warn' })
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200)
    await app.close()
  })

  it('a plain app.listen() with a bad option never serves: the process fails with the ShoalError', async () => {
    const good = new Fixture('fastify-plain.mjs', { PLUGIN_OPTS: JSON.stringify({ shutdownTimeoutMs: 2000 }) })
    const { address } = (await good.event('started')) as { address?: string }
    expect((await get(`${address}/`)).status).toBe(200)
    good.signal('SIGTERM')
    expect((await good.waitForExit()).code).toBe(0) // drained: shoal's handler, not the default kill

    const bad = new Fixture('fastify-plain.mjs', { PLUGIN_OPTS: JSON.stringify({ shutdownTimeoutMs: -1 }) })
    expect((await bad.waitForExit()).code).toBe(1)
    expect(bad.count('started')).toBe(0)
    expect(bad.stderr).toContain('SHOAL_ERR_INVALID_OPTION')
    expect(bad.stderr).toContain('Expected `shutdownTimeoutMs` to be an integer number of milliseconds ≥ 1, got `-1`')
  })
})

describe('clustered() options', () => {
  it.each(healthCases)('%j throws at the call, by name', (options, message) => {
    expect(() => clustered(options as never)).toThrow(expect.objectContaining({ code: codes.SHOAL_ERR_INVALID_OPTION }))
    expect(() => clustered(options as never)).toThrow(message)
  })

  it('accepts the health routes', () => {
    expect(typeof clustered({ readinessPath: '/readyz', livenessPath: '/livez' })).toBe('function')
    expect(typeof clustered()).toBe('function')
  })
})
