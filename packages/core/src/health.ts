import { context } from './context.js'
import { isDraining, isReady } from './worker.js'

/** What a health route answers; adapters only copy it onto their reply. */
export interface HealthReply {
  statusCode: 200 | 503
  headers: Record<string, string>
  body: { status: 'ok' | 'draining' | 'not-ready'; pid: number; workerId: number }
}

/** How long a load balancer should wait before asking a draining worker again. */
const RETRY_AFTER_S = '5'

/**
 * Readiness: 200 while this worker takes traffic; 503 with `Retry-After` from the moment it drains,
 * the cluster shuts down, or a readiness delay began — so the platform stops routing here first.
 */
export function readiness(): HealthReply {
  if (isReady()) return { statusCode: 200, headers: {}, body: { status: 'ok', pid: context.pid, workerId: context.workerId } }
  return {
    statusCode: 503,
    headers: { 'retry-after': RETRY_AFTER_S, 'cache-control': 'no-store' },
    body: { status: isDraining() ? 'draining' : 'not-ready', pid: context.pid, workerId: context.workerId },
  }
}

/** Liveness: 200 whenever the process can answer at all (a stuck event loop cannot). */
export function liveness(): HealthReply {
  return { statusCode: 200, headers: {}, body: { status: 'ok', pid: context.pid, workerId: context.workerId } }
}

/** Paths for the opt-in health routes the adapters mount. */
export interface HealthRoutes {
  /**
   * Readiness route: 503 with `Retry-After` while draining or shutting down.
   * @example readinessPath: '/readyz'
   */
  readinessPath?: string
  /**
   * Liveness route: 200 while the process is healthy.
   * @example livenessPath: '/livez'
   */
  livenessPath?: string
}

/** The reply for `path` if it is one of the health routes, otherwise undefined. */
export function healthFor(path: string, routes: HealthRoutes): HealthReply | undefined {
  if (routes.readinessPath !== undefined && path === routes.readinessPath) return readiness()
  if (routes.livenessPath !== undefined && path === routes.livenessPath) return liveness()
  return undefined
}
