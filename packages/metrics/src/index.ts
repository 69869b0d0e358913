/**
 * Cluster-wide Prometheus metrics for shoal: one `/metrics` on the app's port, answered by any
 * worker. That worker asks the primary (`shoal:metrics`), which collects every live worker's
 * registry in parallel, each within `timeoutMs`, adds the retired workers' counters and shoal's own
 * metrics, and merges them with prom-client's own `AggregatorRegistry.aggregate`, so each metric's
 * `aggregator` setting applies and prom-client writes the exposition format. The primary merges when
 * this module is loaded there (the adapters' one-file apps, or an import in a `runCluster` primary),
 * and sends the scraping worker only the text; otherwise the worker merges.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import {
  type ClusterMetricsAnswer,
  codes,
  context,
  DEFAULT_METRICS_TIMEOUT_MS,
  handleInWorker,
  type MetricJson,
  type MetricSample,
  type Primary,
  type RenderedMetrics,
  ShoalError,
  setMetricsRenderer,
  supervised,
} from '@shoal/core'
import { AggregatorRegistry, type Registry, register } from 'prom-client'

export type { ClusterMetricsAnswer, MetricJson } from '@shoal/core'

export interface ClusterMetricsOptions {
  /**
   * The prom-client registry each worker reports: the same in every worker (the code is the same).
   * @default prom-client's default `register`
   * @example registry: myRegistry
   */
  registry?: Registry
  /**
   * How long the primary waits for each worker. One that has not answered by then never fails the
   * scrape: the answer is made of the others (and that worker's last collected counters), and says
   * so in `shoal_metrics_workers{state="timed_out"}`. Keep it well under Prometheus'
   * `scrape_timeout` (10 s by default).
   * @default 1500
   * @example timeoutMs: 1000
   */
  timeoutMs?: number
  /**
   * One series per worker instead of the cluster's sum: each worker's samples get `worker` (its
   * workerId) and `slot` labels, retired workers' counters `worker="retired"`. For debugging; it
   * multiplies the series count by the number of workers.
   * @default false
   * @example perWorker: process.env.METRICS_PER_WORKER === '1'
   */
  perWorker?: boolean
}

/** A rendered scrape. */
export interface MetricsText {
  contentType: string
  body: string
}

/** The primary adds this much to `timeoutMs` before the asking worker gives up on it. */
const PRIMARY_MARGIN_MS = 5000
const OPTION_NAMES = ['registry', 'timeoutMs', 'perWorker']

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return `[Function ${value.name || 'anonymous'}]`
  try {
    return String(JSON.stringify(value) ?? value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

function invalid(name: string, expected: string, got: unknown): ShoalError {
  return new ShoalError(codes.SHOAL_ERR_INVALID_OPTION, `Expected \`${name}\` to be ${expected}, got \`${describe(got)}\``)
}

/** Validates the options up front; throws `ShoalError` (SHOAL_ERR_INVALID_OPTION) naming the bad one. */
export function resolveMetricsOptions(input: unknown = {}): Required<ClusterMetricsOptions> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid('options', 'an object', input)
  const o = input as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (!OPTION_NAMES.includes(key)) throw invalid(key, `a known option (${OPTION_NAMES.join(', ')})`, 'unknown option')
  }
  const { registry = register, timeoutMs = DEFAULT_METRICS_TIMEOUT_MS, perWorker = false } = o
  if (typeof (registry as Registry | null)?.getMetricsAsJSON !== 'function') {
    throw invalid('registry', 'a prom-client Registry', registry)
  }
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) {
    throw invalid('timeoutMs', 'an integer number of milliseconds from 1 to 60000', timeoutMs)
  }
  if (typeof perWorker !== 'boolean') throw invalid('perWorker', 'a boolean', perWorker)
  return { registry: registry as Registry, timeoutMs, perWorker }
}

/**
 * This worker's registry as plain data that crosses IPC unchanged: samples keep their value, labels
 * and `metricName` (exemplars and undefined label values are left out), and non-finite samples (a
 * NaN gauge) are dropped.
 */
async function snapshot(registry: Registry): Promise<MetricJson[]> {
  const metrics = (await registry.getMetricsAsJSON()) as unknown as MetricJson[]
  // Plain loops: this runs in every worker on every scrape, ~1,000 samples each.
  const out: MetricJson[] = new Array(metrics.length)
  for (let i = 0; i < metrics.length; i++) {
    const { name, help, type, aggregator, values } = metrics[i] as MetricJson
    const clean: MetricSample[] = []
    for (const { value, labels, metricName } of values) {
      if (!Number.isFinite(value)) continue
      let copy: MetricSample['labels'] = labels ?? {}
      for (const k in copy) {
        if (copy[k] === undefined) {
          copy = Object.fromEntries(Object.entries(copy).filter(([, v]) => v !== undefined))
          break
        }
      }
      clean.push(metricName === undefined ? { value, labels: copy } : { value, labels: copy, metricName })
    }
    out[i] = { name, help, type, aggregator: aggregator ?? 'sum', values: clean }
  }
  return out
}

function labelled(metrics: readonly MetricJson[], labels: Record<string, string>): MetricJson[] {
  return metrics.map((m) => ({ ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, ...labels } })) }))
}

/** Merges a `shoal:metrics` answer with prom-client's aggregation and renders it. Exported for tests. */
export async function renderAnswer(answer: ClusterMetricsAnswer, perWorker = false): Promise<MetricsText> {
  const sources: MetricJson[][] = answer.workers.map((w) =>
    perWorker ? labelled(w.metrics, { worker: String(w.workerId), slot: String(w.slot) }) : w.metrics,
  )
  if (answer.retired.length > 0) sources.push(perWorker ? labelled(answer.retired, { worker: 'retired' }) : answer.retired)
  sources.push(answer.own)
  const merged = AggregatorRegistry.aggregate(sources)
  return { contentType: merged.contentType, body: await merged.metrics() }
}

// Loaded in the primary: it merges each scrape itself (see setMetricsRenderer); unused in a worker.
setMetricsRenderer(renderAnswer)

export interface ClusterMetrics {
  /** The cluster's metrics as text, ready to serve; without a primary, this process's registry. */
  scrape(): Promise<MetricsText>
}

/**
 * Registers this worker's registry with shoal, so every scrape (through any worker) collects it,
 * and its final values reach the primary when it drains. Call it once, at startup, in the code
 * every worker runs. Framework-free: serve `scrape()` from any route.
 * @example
 * const metrics = createClusterMetrics()
 * http.createServer(async (req, res) => {
 *   if (req.url === '/metrics') {
 *     const { contentType, body } = await metrics.scrape()
 *     res.setHeader('content-type', contentType).end(body)
 *   }
 * })
 */
export function createClusterMetrics(options?: ClusterMetricsOptions): ClusterMetrics {
  const { registry, timeoutMs, perWorker } = resolveMetricsOptions(options)
  handleInWorker('shoal:metrics', () => snapshot(registry))
  return {
    async scrape() {
      if (!supervised) return { contentType: registry.contentType, body: await registry.metrics() }
      const answer = await context.request<ClusterMetricsAnswer | { rendered: RenderedMetrics }>(
        'shoal:metrics',
        { timeoutMs, perWorker },
        { timeoutMs: timeoutMs + PRIMARY_MARGIN_MS },
      )
      return 'rendered' in answer ? answer.rendered : renderAnswer(answer, perWorker)
    },
  }
}

/**
 * A `(req, res, next)` handler serving the cluster's metrics: Express, Connect, or a plain
 * `node:http` server. A scrape that cannot be answered (the primary is gone) is a 503.
 * @example app.get('/metrics', clusterMetrics())
 */
export function clusterMetrics(
  options?: ClusterMetricsOptions,
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => Promise<void> {
  const metrics = createClusterMetrics(options)
  return (_req, res) => respond(res, () => metrics.scrape())
}

/** Serves a scrape's text, or a 503 that says why it could not be made. */
async function respond(res: ServerResponse, scrape: () => Promise<MetricsText>): Promise<void> {
  try {
    const { contentType, body } = await scrape()
    res.statusCode = 200
    res.setHeader('content-type', contentType)
    res.end(body)
  } catch (err) {
    res.statusCode = 503
    res.setHeader('content-type', 'text/plain; charset=utf-8')
    res.end(`metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`)
  }
}

export interface PrimaryMetricsServerOptions {
  /**
   * The port the primary serves the metrics on (0: a free one; `server.address().port` says which).
   * @example port: 9100
   */
  port: number
  /**
   * The interface to listen on.
   * @default Node's default: every interface
   * @example host: '127.0.0.1'
   */
  host?: string
  /**
   * Where the metrics are served; any other path is a 404.
   * @default '/metrics'
   * @example path: '/internal/metrics'
   */
  path?: string
  /**
   * How long the primary waits for each worker (see `ClusterMetricsOptions.timeoutMs`).
   * @default 1500
   * @example timeoutMs: 1000
   */
  timeoutMs?: number
  /**
   * One series per worker instead of the cluster's sum (see `ClusterMetricsOptions.perWorker`).
   * @default false
   * @example perWorker: true
   */
  perWorker?: boolean
}

/**
 * Optional: the same cluster-wide metrics served by the primary on a port of its own, for when a
 * scrape must not depend on a worker taking it (every worker busy, a port only the monitoring
 * network reaches). The primary then loads prom-client. Start it from `onPrimary`; it closes when
 * the cluster shuts down. Workers still call `clusterMetrics()` / `createClusterMetrics()` (that
 * registers their registry); the app's own `/metrics` route is then optional.
 * @example
 * await clusteredListen(app, 3000, { onPrimary: (primary) => primaryMetricsServer(primary, { port: 9100 }) })
 */
export async function primaryMetricsServer(primary: Primary, options: PrimaryMetricsServerOptions): Promise<Server> {
  if (typeof options !== 'object' || options === null) throw invalid('options', 'an object', options)
  const { port, host, path = '/metrics', ...rest } = options
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw invalid('port', 'an integer from 0 to 65535', port)
  }
  if (host !== undefined && typeof host !== 'string') throw invalid('host', 'a string', host)
  if (typeof path !== 'string' || !path.startsWith('/')) throw invalid('path', "a path starting with '/'", path)
  const { timeoutMs, perWorker } = resolveMetricsOptions(rest)
  const server = createServer(async (req, res) => {
    if (new URL(req.url ?? '/', 'http://x').pathname !== path) {
      res.statusCode = 404
      res.end()
      return
    }
    await respond(res, async () => renderAnswer(await primary.collectMetrics({ timeoutMs }), perWorker))
  })
  // It never keeps the primary alive by itself, and closes with the cluster.
  server.unref()
  primary.once('shutdown', () => server.close())
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}
