export { type BackoffPolicy, type CrashLoopPolicy, CrashWindow, crashWeight, restartDelayMs } from './backoff.js'
export { BALANCING_MODES, type Balancing } from './balancing.js'
export {
  type ClusterContext,
  context,
  getLogger,
  getShared,
  getSharedInfo,
  onSharedChange,
  type RequestOptions,
  type SharedListener,
  sharedReady,
  supervised,
} from './context.js'
export { type DrainOptions, type DrainResult, type ServerDrain, trackServer, type UpgradeCloseCounts } from './drain.js'
export { codes, ShoalError, type ShoalErrorCode } from './errors.js'
export { type HealthReply, type HealthRoutes, healthFor, liveness, readiness } from './health.js'
export { handleInWorker, type InWorkerHandler } from './in-worker.js'
export type { JobRunReport, JobStatus } from './jobs.js'
export { jsonLogger, type LogFn, type Logger, type LoggerOption, silentLogger, textLogger } from './logger.js'
export {
  type ClusterMetricsAnswer,
  DEFAULT_METRICS_TIMEOUT_MS,
  foldRetired,
  type MetricJson,
  type MetricSample,
  type MetricsRenderer,
  type RenderedMetrics,
  setMetricsRenderer,
  type WorkerMetrics,
} from './metrics.js'
export {
  type AdapterOptionName,
  type ClusterOptions,
  type Job,
  type JobRun,
  type RequestHandler,
  type ResolvedOptions,
  resolveOptions,
  type SharedSnapshot,
  type SharedSource,
  type SharedSources,
  type SharedValues,
  validateAdapterOptions,
  WORKER_SIDE_NAMES,
  type WorkerInfo,
} from './options.js'
export {
  type ClusterStatus,
  KILL_MARGIN_MS,
  Primary,
  type PrimaryEvents,
  type ReloadOutcome,
  type WorkerState,
  type WorkerStatus,
} from './primary.js'
export {
  attachToServer,
  type ClusterHandle,
  createPrimary,
  type ListenOptions,
  listen,
  listenOptionsFrom,
  runCluster,
  serve,
  type WorkerHandle,
  type WorkerMain,
  type WorkerSideOptions,
  workerSideOptions,
} from './run.js'
export {
  closeWebSocketsOnDrain,
  type DrainReason,
  onUpgradeDrain,
  type UpgradeClose,
  type UpgradeCloser,
  type WebSocketDrainOptions,
  type WebSocketLike,
  type WebSocketServerLike,
} from './upgrade.js'
export { isDraining, isReady } from './worker.js'
