import { describe, expect, it } from 'vitest'
import { codes, ShoalError } from './errors.js'
import { OPTION_NAMES, resolveOptions, validateAdapterOptions, WORKER_SIDE_NAMES } from './options.js'

function rejection(options: unknown): ShoalError {
  try {
    resolveOptions(options)
  } catch (err) {
    if (err instanceof ShoalError) return err
    throw err
  }
  throw new Error('expected resolveOptions to throw')
}

describe('resolveOptions', () => {
  it('fills documented defaults', () => {
    const o = resolveOptions({ workers: 3 })
    expect(o).toMatchObject({
      workers: 3,
      signals: true,
      shutdownTimeoutMs: 5000,
      readyTimeoutMs: 30_000,
      restartBackoff: { minMs: 250, maxMs: 30_000, healthyAfterMs: 30_000 },
      crashLoop: { maxCrashes: 10, windowMs: 60_000 },
      reloadConcurrency: 1,
      drainOnUncaught: true,
    })
    expect(resolveOptions({ workers: 'auto' }).workers).toBeGreaterThanOrEqual(1)
    expect(resolveOptions({ workers: 0 }).workers).toBe(0)
  })

  it.each([
    [{ workers: -1 }, "Expected `workers` to be a positive integer, 0 (run in-process) or 'auto', got `-1`"],
    [{ workers: 1.5 }, '`workers`'],
    [{ workers: '4' }, 'got `"4"`'],
    [{ shutdownTimeoutMs: -5 }, 'Expected `shutdownTimeoutMs` to be an integer number of milliseconds ≥ 1, got `-5`'],
    [{ readyTimeoutMs: 'soon' }, '`readyTimeoutMs`'],
    [{ signals: 'yes' }, 'Expected `signals` to be a boolean'],
    [{ drainOnUncaught: 'no' }, 'Expected `drainOnUncaught` to be a boolean, got `"no"`'],
    [{ exec: 42 }, 'Expected `exec` to be a file: URL or a path, got `42`'],
    [{ jobs: { purge: { everyMs: 100 } } }, 'Expected `jobs.purge.run` to be a function (job) => void | Promise<void>, got `undefined`'],
    [{ jobs: { purge: { run: () => {} } } }, 'Expected `jobs.purge` to be one of `everyMs` or `cron`, got `"neither"`'],
    [{ jobs: { purge: { everyMs: 100, cron: '* * * * *', run: () => {} } } }, 'got `"both"`'],
    [
      { jobs: { purge: { everyMs: 5, run: () => {} } } },
      'Expected `jobs.purge.everyMs` to be an integer number of milliseconds ≥ 10, got `5`',
    ],
    [{ jobs: { purge: { cron: '', run: () => {} } } }, 'Expected `jobs.purge.cron` to be a cron expression'],
    [{ jobs: { purge: { everyMs: 100, timeoutMs: 0, run: () => {} } } }, '`jobs.purge.timeoutMs`'],
    [{ onPrimary: 'start' }, 'Expected `onPrimary` to be a function (primary) => void | Promise<void>, got `"start"`'],
    [{ restartBackoff: { minMs: 1000, maxMs: 10 } }, '`restartBackoff.maxMs`'],
    [{ crashLoop: { maxCrashes: 0 } }, 'Expected `crashLoop.maxCrashes` to be a positive integer, got `0`'],
    [{ logger: console.log }, '`logger`'],
    [{ shared: { usersCount: { compute: 5, everyMs: 10 } } }, 'Expected `shared.usersCount.compute` to be a function, got `5`'],
    [
      { shared: { usersCount: { compute: () => 1 } } },
      'Expected `shared.usersCount.everyMs` to be an integer number of milliseconds ≥ 10, got `undefined`',
    ],
    [{ shared: { x: 3 } }, 'Expected `shared.x` to be { everyMs, compute } or { value }, got `3`'],
    [{ handlers: { ping: 'pong' } }, 'Expected `handlers.ping` to be a function'],
    [{ wrokers: 2 }, 'Expected `wrokers` to be a known option'],
    [null, 'Expected `options` to be an object, got `null`'],
  ])('rejects %j by name', (options, message) => {
    const err = rejection(options)
    expect(err.code).toBe(codes.SHOAL_ERR_INVALID_OPTION)
    expect(err.message).toContain(message)
  })
})

describe('resolveOptions fuzz', () => {
  const junk = [undefined, null, 0, -1, 1.5, 2 ** 40, Number.NaN, '', 'auto', 'x', true, [], [1], {}, { a: 1 }, () => 1, Symbol('s'), 10n]
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T

  it('either accepts an options object or throws ShoalError naming an option: never anything else', () => {
    for (let i = 0; i < 3000; i++) {
      const options: Record<string, unknown> = {}
      for (const key of OPTION_NAMES)
        if (Math.random() < 0.3)
          options[key] = Math.random() < 0.3 ? { minMs: pick(junk), everyMs: pick(junk), compute: pick(junk) } : pick(junk)
      try {
        resolveOptions(options)
      } catch (err) {
        expect(err).toBeInstanceOf(ShoalError)
        expect((err as ShoalError).code).toBe(codes.SHOAL_ERR_INVALID_OPTION)
        expect((err as ShoalError).message).toMatch(/^Expected `[\w.]+` to be .+, got `.*`$/s)
      }
    }
  })
})

describe('validateAdapterOptions', () => {
  const names = ['readinessPath', 'livenessPath', ...WORKER_SIDE_NAMES] as const

  it('accepts good options, nothing, and the ignored framework keys', () => {
    expect(() => validateAdapterOptions(undefined, names)).not.toThrow()
    expect(() => validateAdapterOptions({ readinessPath: '/readyz', shutdownTimeoutMs: 10, logger: 'silent' }, names)).not.toThrow()
    expect(() => validateAdapterOptions({ prefix: '/v1' }, names, ['prefix'])).not.toThrow()
  })

  it.each([
    [{ readinessPath: 'readyz' }, 'Expected `readinessPath` to be a path starting with \'/\', got `"readyz"`'],
    [{ livenessPath: null }, "Expected `livenessPath` to be a path starting with '/', got `null`"],
    [{ shutdownTimeoutMs: -1 }, 'Expected `shutdownTimeoutMs` to be an integer number of milliseconds ≥ 1, got `-1`'],
    [{ shutdownTimeoutMS: 10 }, 'Expected `shutdownTimeoutMS` to be a known option (readinessPath, livenessPath, shutdownTimeoutMs'],
    [{ workers: 2 }, 'Expected `workers` to be a known option'],
    [[], 'Expected `options` to be an object, got `[]`'],
  ])('rejects %j by name', (options, message) => {
    expect(() => validateAdapterOptions(options, names)).toThrow(expect.objectContaining({ code: codes.SHOAL_ERR_INVALID_OPTION }))
    expect(() => validateAdapterOptions(options, names)).toThrow(message)
  })

  it('takes only the options it is given: a health path is unknown to a drain-only adapter', () => {
    expect(() => validateAdapterOptions({ readinessPath: '/r' }, ['shutdownTimeoutMs'])).toThrow(
      'Expected `readinessPath` to be a known option',
    )
  })
})
