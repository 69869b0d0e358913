/**
 * The primary's half of cluster-wide metrics, with no metrics client of its own: it speaks
 * prom-client's `getMetricsAsJSON()` shape (plain data), so `@shoal/metrics` can merge with
 * prom-client's own `AggregatorRegistry.aggregate`.
 *
 * Monotonic across exits: every worker the primary forks has one entry in the `MetricsBook`; its
 * counters and histograms move into the one `retired` accumulation exactly once — its final values
 * when it drains (`shoal:metrics-final`), else the last values a scrape collected from it when it
 * exits — and the entry is deleted by whichever comes first. Whatever arrives for a worker without
 * an entry (a second final, a final after the exit, a scrape's answer after the final) is ignored,
 * so nothing is counted twice, and the book holds only live workers.
 */

/** One sample of prom-client's `getMetricsAsJSON()`: `metricName` names a histogram's `_bucket` / `_sum` / `_count`. */
export interface MetricSample {
  value: number
  labels: Record<string, string | number>
  metricName?: string
}

/** One metric of prom-client's `getMetricsAsJSON()`. */
export interface MetricJson {
  name: string
  help: string
  type: string
  values: MetricSample[]
  /** How prom-client merges this metric across processes: `sum` (default), `first`, `min`, `max`, `average`, `omit`. */
  aggregator: string
}

/** One worker's part of a scrape. */
export interface WorkerMetrics {
  workerId: number
  slot: number
  pid: number
  /** `timed_out`: its last collected counters and histograms (never gauges), so sums do not dip while it is slow. */
  state: 'answered' | 'timed_out'
  metrics: MetricJson[]
}

/** What `shoal:metrics` answers a worker's scrape with. */
export interface ClusterMetricsAnswer {
  workers: WorkerMetrics[]
  /** Counters and histograms of every worker that exited, folded into one snapshot. */
  retired: MetricJson[]
  /** shoal's own metrics (workers, restarts, reloads, drains, heartbeat, shared values). */
  own: MetricJson[]
  answered: number
  timedOut: number
}

const MAX_METRICS = 100_000

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function parseSample(value: unknown): MetricSample | null {
  if (!isRecord(value) || typeof value.value !== 'number' || !Number.isFinite(value.value)) return null
  const labels: Record<string, string | number> = {}
  if (value.labels !== undefined) {
    if (!isRecord(value.labels)) return null
    for (const [k, v] of Object.entries(value.labels)) {
      if (typeof v === 'string' || typeof v === 'number') labels[k] = v
      else return null
    }
  }
  const sample: MetricSample = { value: value.value, labels }
  if (typeof value.metricName === 'string') sample.metricName = value.metricName
  return sample
}

/**
 * A worker's snapshot as the primary trusts it: anything that is not prom-client's JSON shape is
 * dropped (a misbehaving worker must not take the primary down), and so are samples that are not
 * finite numbers.
 */
export function parseSnapshot(value: unknown): MetricJson[] {
  if (!Array.isArray(value)) return []
  const out: MetricJson[] = []
  for (const m of value.slice(0, MAX_METRICS)) {
    if (!isRecord(m) || typeof m.name !== 'string' || typeof m.type !== 'string' || !Array.isArray(m.values)) continue
    const values: MetricSample[] = []
    for (const v of m.values) {
      const sample = parseSample(v)
      if (sample) values.push(sample)
    }
    out.push({
      name: m.name,
      help: typeof m.help === 'string' ? m.help : m.name,
      type: m.type,
      values,
      aggregator: typeof m.aggregator === 'string' ? m.aggregator : 'sum',
    })
  }
  return out
}

/**
 * The metrics whose cluster total must never go down: counters and histograms that prom-client sums
 * across processes. A gauge is a current reading (it leaves with its worker); a summary's quantiles
 * cannot be added up; a metric with another `aggregator` was not meant to be summed.
 */
export function isMonotonic(metric: MetricJson): boolean {
  return (metric.type === 'counter' || metric.type === 'histogram') && metric.aggregator === 'sum'
}

function sampleKey(sample: MetricSample): string {
  const labels = Object.keys(sample.labels)
    .sort()
    .map((k) => [k, String(sample.labels[k])])
  return JSON.stringify([sample.metricName ?? '', labels])
}

/**
 * Adds a worker's counters and histograms into the accumulation of retired workers: samples with
 * the same name and labels are summed, new ones appended; gauges, summaries and non-summed metrics
 * are left out. Pure: returns a new accumulation, `acc` and `snapshot` are not changed.
 * @example retired = foldRetired(retired, finalValues)
 */
export function foldRetired(acc: readonly MetricJson[], snapshot: readonly MetricJson[]): MetricJson[] {
  const out = acc.map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels } })) }))
  const byName = new Map(out.map((m) => [m.name, m]))
  for (const metric of snapshot) {
    if (!isMonotonic(metric)) continue
    let into = byName.get(metric.name)
    if (!into) {
      into = { name: metric.name, help: metric.help, type: metric.type, aggregator: metric.aggregator, values: [] }
      byName.set(metric.name, into)
      out.push(into)
    } else if (into.type !== metric.type) {
      continue // the same name with another type in new code: keep the first, never mix them
    }
    const index = new Map(into.values.map((v) => [sampleKey(v), v]))
    for (const sample of metric.values) {
      const found = index.get(sampleKey(sample))
      if (found) {
        found.value += sample.value
        continue
      }
      const copy: MetricSample = { ...sample, labels: { ...sample.labels } }
      into.values.push(copy)
      index.set(sampleKey(copy), copy)
    }
  }
  return out
}

/** Only the counters and histograms of a snapshot (what a worker that did not answer still contributes). */
export function monotonicOnly(snapshot: readonly MetricJson[]): MetricJson[] {
  return snapshot.filter(isMonotonic)
}

interface Entry {
  slot: number
  pid: number
  /**
   * The last values a scrape collected from it (or none yet), as they arrived: JSON, already checked
   * by the worker (`runInWorker`). Parsed only when folded (at its exit) or when it stands in for a
   * timed-out worker, so a scrape does not walk every sample in the primary.
   */
  last: unknown
}

/** How one worker's collect ended. */
export type Collected =
  | { key: number; outcome: 'answered'; value: unknown }
  /** The worker registered no metrics (`shoal:metrics` unknown there): it answers empty, at once. */
  | { key: number; outcome: 'empty' }
  | { key: number; outcome: 'timed_out' }
  /** It exited (or its channel closed) before it answered: its values are in `retired` already. */
  | { key: number; outcome: 'gone' }

export class MetricsBook {
  readonly #live = new Map<number, Entry>()
  #retired: MetricJson[] = []
  #retiredWorkers = 0

  /** A worker was forked. */
  add(key: number, slot: number, pid: number): void {
    if (!this.#live.has(key)) this.#live.set(key, { slot, pid, last: [] })
  }

  /** Workers to ask on a scrape. */
  keys(): number[] {
    return [...this.#live.keys()]
  }

  has(key: number): boolean {
    return this.#live.has(key)
  }

  /**
   * The worker's final values as it drains, after its servers drained. Folded into `retired` once;
   * false (ignored) when this worker's values were already retired (a second final, or a late one).
   */
  final(key: number, snapshot: unknown): boolean {
    if (!this.#live.has(key)) return false
    this.#retire(key, parseSnapshot(snapshot))
    return true
  }

  /** The worker exited: the last values collected from it are retired, unless its final values were. */
  exited(key: number): void {
    const entry = this.#live.get(key)
    if (entry) this.#retire(key, parseSnapshot(entry.last))
  }

  /** The accumulation of every retired worker's counters and histograms. */
  retired(): MetricJson[] {
    return this.#retired
  }

  /** How many workers' values were folded into `retired`. */
  get retiredWorkers(): number {
    return this.#retiredWorkers
  }

  /** Live workers (bounded by the workers that exist). */
  get size(): number {
    return this.#live.size
  }

  /**
   * Turns one scrape's collects into its answer, synchronously: a worker whose values were retired
   * while the scrape waited (its final arrived, or it exited) is left out, since `retired` holds it.
   */
  settle(
    results: readonly Collected[],
    own: (scrape: { answered: number; timedOut: number; retiredWorkers: number }) => MetricJson[],
  ): ClusterMetricsAnswer {
    const workers: WorkerMetrics[] = []
    let answered = 0
    let timedOut = 0
    for (const result of results) {
      const entry = this.#live.get(result.key)
      if (!entry || result.outcome === 'gone') continue
      const { slot, pid } = entry
      if (result.outcome === 'timed_out') {
        timedOut++
        workers.push({ workerId: result.key, slot, pid, state: 'timed_out', metrics: monotonicOnly(parseSnapshot(entry.last)) })
        continue
      }
      answered++
      entry.last = result.outcome === 'answered' && Array.isArray(result.value) ? result.value : []
      workers.push({ workerId: result.key, slot, pid, state: 'answered', metrics: entry.last as MetricJson[] })
    }
    const counts = { answered, timedOut, retiredWorkers: this.#retiredWorkers }
    return { workers, retired: this.#retired, own: own(counts), answered, timedOut }
  }

  #retire(key: number, snapshot: MetricJson[]): void {
    this.#live.delete(key)
    this.#retired = foldRetired(this.#retired, snapshot)
    this.#retiredWorkers++
  }
}

/** A histogram in prom-client's JSON shape, for shoal's own durations. */
export class Histogram {
  readonly #bounds: readonly number[]
  readonly #counts: number[]
  #sum = 0
  #count = 0

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds
    this.#counts = bounds.map(() => 0)
  }

  observe(value: number): void {
    this.#sum += value
    this.#count++
    for (let i = 0; i < this.#bounds.length; i++) if (value <= (this.#bounds[i] as number)) this.#counts[i] = (this.#counts[i] ?? 0) + 1
  }

  toJson(name: string, help: string): MetricJson {
    const values: MetricSample[] = this.#bounds.map((le, i) => ({
      value: this.#counts[i] ?? 0,
      labels: { le },
      metricName: `${name}_bucket`,
    }))
    values.push({ value: this.#count, labels: { le: '+Inf' }, metricName: `${name}_bucket` })
    values.push({ value: this.#sum, labels: {}, metricName: `${name}_sum` })
    values.push({ value: this.#count, labels: {}, metricName: `${name}_count` })
    return { name, help, type: 'histogram', values, aggregator: 'sum' }
  }
}

export type RestartReason = 'crash' | 'stuck' | 'memory'

/** What `ownMetrics` reads from the primary's status: the fields it needs, nothing more. */
export interface OwnStatus {
  target: number
  generation: number
  workers: { slot: number; workerId: number; state: string; rssBytes: number | undefined; loopDelayMs: number | undefined }[]
  shared: Record<string, { version: number; updatedAt: number }>
}

const DURATION_BUCKETS_S = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

/** The primary's own counts, kept as events happen (a few integers: nothing per request). */
export class OwnStats {
  readonly restarts: Record<RestartReason, number> = { crash: 0, stuck: 0, memory: 0 }
  readonly reloads = { done: 0, failed: 0 }
  readonly reloadSeconds = new Histogram(DURATION_BUCKETS_S)
  readonly drainSeconds = new Histogram(DURATION_BUCKETS_S)
  crashLoop = false
  readonly #draining = new Map<number, number>()
  /** Workers killed as stuck: their crash that follows is counted as `stuck`, not twice. */
  readonly #stuck = new Set<number>()

  restart(reason: RestartReason, key?: number): void {
    if (reason === 'stuck' && key !== undefined) this.#stuck.add(key)
    if (reason === 'crash' && key !== undefined && this.#stuck.delete(key)) return
    this.restarts[reason]++
  }

  reload(outcome: 'done' | 'failed', durationMs: number): void {
    this.reloads[outcome]++
    this.reloadSeconds.observe(durationMs / 1000)
  }

  drainStarted(key: number, now: number): void {
    if (!this.#draining.has(key)) this.#draining.set(key, now)
  }

  exited(key: number, now: number): void {
    this.#stuck.delete(key)
    const started = this.#draining.get(key)
    if (started === undefined) return
    this.#draining.delete(key)
    this.drainSeconds.observe((now - started) / 1000)
  }
}

function gauge(name: string, help: string, values: MetricSample[]): MetricJson {
  return { name, help, type: 'gauge', values, aggregator: 'sum' }
}

function counter(name: string, help: string, values: MetricSample[]): MetricJson {
  return { name, help, type: 'counter', values, aggregator: 'sum' }
}

/**
 * shoal's own metrics in prom-client's JSON shape, from the primary's status and counts. Names
 * follow Prometheus' conventions: a unit in the name, `_total` on counters.
 */
export function ownMetrics(
  status: OwnStatus,
  stats: OwnStats,
  scrape: { answered: number; timedOut: number; retiredWorkers: number; failures?: ReadonlyMap<string, number> },
  now: number,
): MetricJson[] {
  const states = { starting: 0, ready: 0, draining: 0 } as Record<string, number>
  for (const w of status.workers) states[w.state] = (states[w.state] ?? 0) + 1
  const perWorker = (read: (w: OwnStatus['workers'][number]) => number | undefined) =>
    status.workers.flatMap((w) => {
      const value = read(w)
      return value === undefined || !Number.isFinite(value) ? [] : [{ value, labels: { slot: w.slot, worker: w.workerId } }]
    })
  return [
    gauge(
      'shoal_workers',
      'Workers by state.',
      Object.entries(states).map(([state, value]) => ({ value, labels: { state } })),
    ),
    gauge('shoal_workers_target', 'The number of workers the primary keeps running.', [{ value: status.target, labels: {} }]),
    gauge('shoal_generation', 'Rolling reloads since the primary started (the code generation workers run).', [
      { value: status.generation, labels: {} },
    ]),
    counter(
      'shoal_worker_restarts_total',
      'Workers replaced because they crashed, were stuck (event loop silent) or exceeded maxMemoryMb.',
      Object.entries(stats.restarts).map(([reason, value]) => ({ value, labels: { reason } })),
    ),
    counter(
      'shoal_reloads_total',
      'Rolling reloads by outcome.',
      Object.entries(stats.reloads).map(([outcome, value]) => ({ value, labels: { outcome } })),
    ),
    stats.reloadSeconds.toJson('shoal_reload_duration_seconds', 'Duration of rolling reloads, done or failed.'),
    stats.drainSeconds.toJson('shoal_worker_drain_duration_seconds', 'Time from a worker starting to drain until it exited.'),
    gauge(
      'shoal_worker_resident_memory_bytes',
      'Resident memory of each worker at its last heartbeat.',
      perWorker((w) => w.rssBytes),
    ),
    gauge(
      'shoal_worker_event_loop_delay_seconds',
      'Mean event-loop delay of each worker over its last heartbeat interval.',
      perWorker((w) => (w.loopDelayMs === undefined ? undefined : w.loopDelayMs / 1000)),
    ),
    gauge(
      'shoal_shared_value_age_seconds',
      'Time since each shared value last changed.',
      Object.entries(status.shared).map(([name, { updatedAt }]) => ({ value: Math.max(0, (now - updatedAt) / 1000), labels: { name } })),
    ),
    counter(
      'shoal_shared_compute_failures_total',
      'Shared value computes that threw or timed out (the last good value was kept).',
      [...(scrape.failures ?? [])].map(([name, value]) => ({ value, labels: { name } })),
    ),
    gauge('shoal_crash_loop', '1 once the crash-loop breaker tripped (the primary stops forking and exits 1).', [
      { value: stats.crashLoop ? 1 : 0, labels: {} },
    ]),
    gauge('shoal_metrics_workers', 'Workers in this scrape: answered in time, or timed out (their last counters were used).', [
      { value: scrape.answered, labels: { state: 'answered' } },
      { value: scrape.timedOut, labels: { state: 'timed_out' } },
    ]),
    counter('shoal_metrics_retired_workers_total', 'Exited workers whose counters and histograms were folded into the totals.', [
      { value: scrape.retiredWorkers, labels: {} },
    ]),
  ]
}

/** The payload of `shoal:metrics`: how long to wait for each worker. */
export const DEFAULT_METRICS_TIMEOUT_MS = 1500

export function metricsTimeoutMs(payload: unknown): number {
  const value = isRecord(payload) ? payload.timeoutMs : undefined
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 60_000 ? value : DEFAULT_METRICS_TIMEOUT_MS
}

/** The scrape as text, ready to serve. */
export interface RenderedMetrics {
  contentType: string
  body: string
}

/** Merges an answer and renders it (prom-client's aggregation, supplied by `@shoal/metrics`). */
export type MetricsRenderer = (answer: ClusterMetricsAnswer, perWorker: boolean) => Promise<RenderedMetrics>

let renderer: MetricsRenderer | undefined

/**
 * Lets the primary merge and render a scrape itself, where `@shoal/metrics` (and so prom-client) is
 * loaded in the primary: the scraping worker then receives the text (about one worker's size)
 * instead of every worker's snapshot, which at 8 workers is 0.5 MB through two IPC hops. Without it
 * (a `runCluster` primary that never imports `@shoal/metrics`) the worker merges.
 */
export function setMetricsRenderer(fn: MetricsRenderer): void {
  renderer = fn
}

export function metricsRenderer(): MetricsRenderer | undefined {
  return renderer
}

/** `perWorker` from a `shoal:metrics` payload. */
export function metricsPerWorker(payload: unknown): boolean {
  return isRecord(payload) && payload.perWorker === true
}
