// The examples, started the way `pnpm demo` starts them, hit once, stopped with Ctrl+C.
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'
import { get } from './helpers/http.js'

describe.each(['express', 'fastify'])('examples/%s', (name) => {
  it('serves the worker pid and the cached usersCount, and stops cleanly', async () => {
    const server = fileURLToPath(new URL(`../examples/${name}/dist/server.js`, import.meta.url))
    const f = new Fixture(server, { PORT: '0', HOST: '127.0.0.1', WORKERS: '2' })
    await f.waitForOutput(/workers on (http:\/\/\S+)/)
    const address = /workers on (http:\/\/\S+)/.exec(f.stdout)?.[1] ?? ''
    const body = (await get(`${address}/`)).json<{ pid: number; usersCount: number }>()
    expect(body.pid).not.toBe(f.pid)
    expect(body.usersCount).toBeGreaterThanOrEqual(1000)
    f.signalGroup('SIGINT')
    expect((await f.waitForExit()).code).toBe(0)
  })
})

describe('examples/once-per-cluster', () => {
  it('runs the job once per cluster and limits each client to 10 requests a minute across workers', async () => {
    const server = fileURLToPath(new URL('../examples/once-per-cluster/dist/server.js', import.meta.url))
    const f = new Fixture(server, { PORT: '0', HOST: '127.0.0.1', WORKERS: '2' })
    await f.waitForOutput(/workers on (http:\/\/\S+)/)
    const address = /workers on (http:\/\/\S+)/.exec(f.stdout)?.[1] ?? ''
    const statuses: number[] = []
    for (let i = 0; i < 11; i++) statuses.push((await get(`${address}/`)).status)
    expect(statuses).toEqual([...Array(10).fill(200), 429])
    await f.waitForOutput(/purged \d expired sessions[\s\S]*purged \d expired sessions/)
    // Only the primary runs it.
    expect(new Set([...f.stdout.matchAll(/purged \d expired sessions \(pid (\d+)\)/g)].map((m) => Number(m[1])))).toEqual(new Set([f.pid]))
    f.signalGroup('SIGINT')
    expect((await f.waitForExit()).code).toBe(0)
  })
})

describe('examples/metrics', () => {
  it('one /metrics for the cluster: every request the workers served is counted in one scrape', async () => {
    const server = fileURLToPath(new URL('../examples/metrics/dist/server.js', import.meta.url))
    const f = new Fixture(server, { PORT: '0', HOST: '127.0.0.1', WORKERS: '2' })
    await f.waitForOutput(/workers on (http:\/\/\S+)/)
    const address = /workers on (http:\/\/\S+)/.exec(f.stdout)?.[1] ?? ''
    // A new connection per request, 8 at a time; which workers serve them is up to the balancing
    // (test/metrics.test.ts pins both workers and checks the exact cross-worker sums).
    let sent = 0
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 10; i++, sent++) expect((await get(`${address}/`)).status).toBe(200)
      }),
    )
    const metrics = await get(`${address}/metrics`)
    expect(metrics.body).toMatch(new RegExp(`^http_requests_total\\{route="/",code="200"\\} ${sent}$`, 'm'))
    expect(metrics.body).toMatch(/^shoal_metrics_workers\{state="answered"\} 2$/m)
    f.signalGroup('SIGINT')
    expect((await f.waitForExit()).code).toBe(0)
  })
})
