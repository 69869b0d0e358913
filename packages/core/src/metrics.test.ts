import { describe, expect, it } from 'vitest'
import {
  type Collected,
  foldRetired,
  type MetricJson,
  MetricsBook,
  metricsTimeoutMs,
  OwnStats,
  ownMetrics,
  parseSnapshot,
} from './metrics.js'

const counter = (value: number, labels: Record<string, string> = {}): MetricJson => ({
  name: 'http_requests_total',
  help: 'requests',
  type: 'counter',
  aggregator: 'sum',
  values: [{ value, labels }],
})
const gauge = (value: number): MetricJson => ({
  name: 'in_flight',
  help: 'in flight',
  type: 'gauge',
  aggregator: 'sum',
  values: [{ value, labels: {} }],
})
const histogram = (count: number, sum: number): MetricJson => ({
  name: 'latency_seconds',
  help: 'latency',
  type: 'histogram',
  aggregator: 'sum',
  values: [
    { value: count, labels: { le: 0.1 }, metricName: 'latency_seconds_bucket' },
    { value: count, labels: { le: '+Inf' }, metricName: 'latency_seconds_bucket' },
    { value: sum, labels: {}, metricName: 'latency_seconds_sum' },
    { value: count, labels: {}, metricName: 'latency_seconds_count' },
  ],
})
const total = (metrics: MetricJson[], name: string, metricName?: string) =>
  metrics
    .filter((m) => m.name === name)
    .flatMap((m) => m.values)
    .filter((v) => metricName === undefined || v.metricName === metricName)
    .reduce((sum, v) => sum + v.value, 0)

describe('foldRetired', () => {
  it('sums counters and histograms by name and labels, drops gauges, and changes neither input', () => {
    const a = [counter(3, { code: '200' }), histogram(3, 0.3), gauge(5)]
    const b = [counter(2, { code: '200' }), counter(1, { code: '500' }), histogram(2, 0.1), gauge(7)]
    const once = foldRetired([], a)
    const twice = foldRetired(once, b)
    expect(total(once, 'http_requests_total')).toBe(3)
    expect(twice.find((m) => m.name === 'http_requests_total')?.values).toEqual([
      { value: 5, labels: { code: '200' } },
      { value: 1, labels: { code: '500' } },
    ])
    expect(total(twice, 'latency_seconds', 'latency_seconds_count')).toBe(5)
    expect(total(twice, 'latency_seconds', 'latency_seconds_sum')).toBeCloseTo(0.4)
    expect(twice.find((m) => m.name === 'latency_seconds')?.values.filter((v) => v.metricName === 'latency_seconds_bucket')).toHaveLength(2)
    expect(twice.some((m) => m.name === 'in_flight')).toBe(false)
    expect(total(once, 'http_requests_total')).toBe(3) // pure
    expect(a[0]?.values[0]?.value).toBe(3)
  })

  it('label order does not matter; a non-summed counter and a summary are left out', () => {
    const x = { ...counter(1, { a: '1', b: '2' }) }
    const y = { ...counter(2), values: [{ value: 2, labels: { b: '2', a: '1' } }] }
    expect(foldRetired(foldRetired([], [x]), [y])[0]?.values).toEqual([{ value: 3, labels: { a: '1', b: '2' } }])
    const max = { ...counter(9), name: 'max_total', aggregator: 'max' }
    const summary = { ...counter(9), name: 's', type: 'summary' }
    expect(foldRetired([], [max, summary])).toEqual([])
  })
})

describe('parseSnapshot', () => {
  it('keeps prom-client JSON, drops malformed metrics and non-finite samples', () => {
    expect(parseSnapshot('x')).toEqual([])
    expect(
      parseSnapshot([
        null,
        { name: 1 },
        { name: 'a', type: 'counter', values: [{ value: Number.NaN }, { value: 1, labels: { x: {} } }, { value: 2 }] },
      ]),
    ).toEqual([{ name: 'a', help: 'a', type: 'counter', aggregator: 'sum', values: [{ value: 2, labels: {} }] }])
  })
})

describe('MetricsBook: a worker moves from live to retired exactly once', () => {
  const own = () => []
  const scrape = (book: MetricsBook, results: Collected[]) => book.settle(results, own)
  const clusterTotal = (book: MetricsBook, results: Collected[]) => {
    const answer = scrape(book, results)
    return total([...answer.workers.flatMap((w) => w.metrics), ...answer.retired], 'http_requests_total')
  }

  it('final values, then the exit, then a second final: counted once', () => {
    const book = new MetricsBook()
    book.add(1, 0, 100)
    book.add(2, 1, 101)
    expect(
      clusterTotal(book, [
        { key: 1, outcome: 'answered', value: [counter(4)] },
        { key: 2, outcome: 'answered', value: [counter(6)] },
      ]),
    ).toBe(10)
    expect(book.final(1, [counter(5)])).toBe(true)
    book.exited(1)
    expect(book.final(1, [counter(5)])).toBe(false)
    expect(book.size).toBe(1)
    expect(book.retiredWorkers).toBe(1)
    expect(clusterTotal(book, [{ key: 2, outcome: 'answered', value: [counter(6)] }])).toBe(11)
  })

  it('a crash retires the last collected values; a final that arrives after the exit is ignored', () => {
    const book = new MetricsBook()
    book.add(1, 0, 100)
    scrape(book, [{ key: 1, outcome: 'answered', value: [counter(7), gauge(3)] }])
    book.exited(1)
    expect(book.final(1, [counter(9)])).toBe(false)
    expect(total(book.retired(), 'http_requests_total')).toBe(7)
    expect(book.retired().some((m) => m.name === 'in_flight')).toBe(false)
  })

  it("a scrape's answer that settles after the worker's final values is left out (never both)", () => {
    const book = new MetricsBook()
    book.add(1, 0, 100)
    book.add(2, 1, 101)
    book.final(1, [counter(5)]) // while the scrape waited
    const answer = scrape(book, [
      { key: 1, outcome: 'answered', value: [counter(5)] },
      { key: 2, outcome: 'answered', value: [counter(1)] },
    ])
    expect(answer.workers.map((w) => w.workerId)).toEqual([2])
    book.exited(1)
    expect(total(book.retired(), 'http_requests_total')).toBe(5)
  })

  it('a timed-out worker contributes its last counters (not gauges) and is counted as timed out; an empty one answers', () => {
    const book = new MetricsBook()
    book.add(1, 0, 100)
    book.add(2, 1, 101)
    scrape(book, [{ key: 1, outcome: 'answered', value: [counter(3), gauge(1)] }])
    const answer = scrape(book, [
      { key: 1, outcome: 'timed_out' },
      { key: 2, outcome: 'empty' },
    ])
    expect(answer).toMatchObject({ answered: 1, timedOut: 1 })
    expect(answer.workers[0]).toMatchObject({ workerId: 1, state: 'timed_out', metrics: [counter(3)] })
    expect(answer.workers[1]).toMatchObject({ workerId: 2, state: 'answered', metrics: [] })
  })
})

describe('ownMetrics', () => {
  it('names carry units, counters end in _total, a stuck worker is not also a crash', () => {
    const stats = new OwnStats()
    stats.restart('stuck', 4)
    stats.restart('crash', 4)
    stats.restart('crash', 5)
    stats.restart('memory')
    stats.reload('done', 1200)
    stats.drainStarted(3, 1000)
    stats.exited(3, 1500)
    const status = {
      target: 2,
      generation: 1,
      workers: [{ slot: 0, workerId: 6, state: 'ready', rssBytes: 50e6, loopDelayMs: 2 }],
      shared: { usersCount: { version: 1, updatedAt: 0 } },
    }
    const failures = new Map([['usersCount', 2]])
    const metrics = ownMetrics(status, stats, { answered: 1, timedOut: 0, retiredWorkers: 3, failures }, 10_000)
    const byName = new Map(metrics.map((m) => [m.name, m]))
    expect(byName.get('shoal_worker_restarts_total')?.values).toEqual([
      { value: 1, labels: { reason: 'crash' } },
      { value: 1, labels: { reason: 'stuck' } },
      { value: 1, labels: { reason: 'memory' } },
    ])
    expect(total(metrics, 'shoal_worker_drain_duration_seconds', 'shoal_worker_drain_duration_seconds_sum')).toBe(0.5)
    expect(total(metrics, 'shoal_worker_event_loop_delay_seconds')).toBe(0.002)
    expect(total(metrics, 'shoal_shared_value_age_seconds')).toBe(10)
    expect(byName.get('shoal_shared_compute_failures_total')?.values).toEqual([{ value: 2, labels: { name: 'usersCount' } }])
    for (const m of metrics) if (m.type === 'counter') expect(m.name).toMatch(/_total$/)
  })
})

describe('metricsTimeoutMs', () => {
  it('takes a sane integer from the payload, else the default', () => {
    expect(metricsTimeoutMs({ timeoutMs: 250 })).toBe(250)
    expect(metricsTimeoutMs({ timeoutMs: -1 })).toBe(1500)
    expect(metricsTimeoutMs(undefined)).toBe(1500)
  })
})
