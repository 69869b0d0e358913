/**
 * How connections reach the workers (the `balancing` option), and which mode this platform can run.
 *
 * | mode          | who accepts                                   | cost per new connection        |
 * | ------------- | --------------------------------------------- | ------------------------------ |
 * | `shared`      | every worker, from one listening socket        | none (node:cluster SCHED_NONE) |
 * | `round-robin` | the primary, which passes each socket over IPC | one IPC hop through the primary |
 * | `reuse-port`  | every worker, from its own socket (SO_REUSEPORT) | none; the kernel hashes        |
 *
 * A draining worker closes its listener. With `shared` the socket stays open in the other workers
 * and its queue goes to them; with `reuse-port` the kernel drops what was queued on the closed socket
 * unless `net.ipv4.tcp_migrate_req` is 1 — so shoal only runs `reuse-port` where that holds, as a
 * reload would otherwise reset clients.
 */
import { readFileSync } from 'node:fs'
import type { ListenOptions, Server } from 'node:net'
import { codes, ShoalError } from './errors.js'

export const BALANCING_MODES = ['shared', 'round-robin', 'reuse-port'] as const
export type Balancing = (typeof BALANCING_MODES)[number]

export interface BalancingHost {
  platform: NodeJS.Platform
  /** `process.versions.node` */
  nodeVersion: string
  /** `net.ipv4.tcp_migrate_req` as read from /proc, or undefined where it cannot be read. */
  migrateReq: string | undefined
}

export interface BalancingDecision {
  requested: Balancing
  /** The mode the cluster runs. */
  mode: Balancing
  /** Why `requested` could not run here (then `mode` is 'round-robin'). */
  unavailable?: string
}

/**
 * `shared` wherever the kernel wakes workers fairly; Windows hands one worker most connections
 * from a shared socket (the reason node:cluster made round-robin its default there too).
 */
export function defaultBalancing(platform: NodeJS.Platform): Balancing {
  return platform === 'win32' ? 'round-robin' : 'shared'
}

/** True on a Node that has `reusePort` in `server.listen` (22.12+, 23.1+). */
export function nodeHasReusePort(nodeVersion: string): boolean {
  const [major = 0, minor = 0] = nodeVersion.split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12)
}

/** Decides the mode the cluster runs; a mode that cannot run here falls back to round-robin, with the reason. */
export function decideBalancing(requested: Balancing, host: BalancingHost): BalancingDecision {
  if (requested !== 'reuse-port') return { requested, mode: requested }
  const unavailable =
    host.platform !== 'linux'
      ? `${host.platform} has no SO_REUSEPORT that moves a closed listener's queue to the others (Linux only)`
      : !nodeHasReusePort(host.nodeVersion)
        ? `Node ${host.nodeVersion} has no reusePort (22.12 or later)`
        : host.migrateReq !== '1'
          ? `net.ipv4.tcp_migrate_req is ${host.migrateReq ?? 'unreadable'}: a draining worker would reset the connections queued on its socket (set it to 1: sysctl -w net.ipv4.tcp_migrate_req=1)`
          : undefined
  return unavailable ? { requested, mode: 'round-robin', unavailable } : { requested, mode: requested }
}

export function readBalancingHost(): BalancingHost {
  let migrateReq: string | undefined
  try {
    migrateReq = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim()
  } catch {
    migrateReq = undefined
  }
  return { platform: process.platform, nodeVersion: process.versions.node, migrateReq }
}

/** The env var that tells a worker how to listen. */
export const BALANCING_ENV = 'SHOAL_BALANCING'

type ListenArgs = unknown[]

/**
 * A worker's half of `reuse-port`: this server's `listen` binds a socket of its own with
 * `SO_REUSEPORT` (`exclusive`, so node:cluster does not route it through the primary), whichever
 * way the framework calls `listen`. A pipe, a handle or an fd are passed through untouched. Port 0
 * is an error: each worker would get a port of its own.
 */
export function listenOnOwnSocket(server: Server): void {
  const listen = server.listen as (this: Server, ...args: ListenArgs) => Server
  server.listen = function listenReusingPort(this: Server, ...args: ListenArgs): Server {
    const callback = typeof args.at(-1) === 'function' ? (args.pop() as () => void) : undefined
    const options = listenOptionsOf(args)
    if (options === undefined) return listen.apply(this, callback ? [...args, callback] : args)
    if (!options.port) {
      const error = new ShoalError(
        codes.SHOAL_ERR_LISTEN,
        `balancing 'reuse-port' needs a fixed port, got ${String(options.port ?? 'none')}: every worker binds its own socket, so port 0 would give each worker a different port`,
      )
      process.nextTick(() => this.emit('error', error))
      return this
    }
    return listen.call(this, { ...options, reusePort: true, exclusive: true }, callback)
  } as Server['listen']
}

/** `listen(options)` or `listen(port[, host][, backlog])` as options; undefined for a pipe, handle or fd. */
type PortOptions = Omit<ListenOptions, 'port'> & { port?: number | undefined }

function listenOptionsOf(args: ListenArgs): PortOptions | undefined {
  const [first, second, third] = args
  if (typeof first === 'object' && first !== null) {
    const o = first as ListenOptions & Record<string, unknown>
    if (o.path !== undefined || o.fd !== undefined || o.handle !== undefined || o._handle !== undefined) return undefined
    return { ...o, port: o.port === undefined ? undefined : Number(o.port) }
  }
  const port = typeof first === 'number' ? first : typeof first === 'string' && /^\d+$/.test(first) ? Number(first) : undefined
  if (port === undefined && first !== undefined) return undefined
  const host = typeof second === 'string' ? second : undefined
  const backlog = typeof (host === undefined ? second : third) === 'number' ? ((host === undefined ? second : third) as number) : undefined
  return { port, ...(host !== undefined && { host }), ...(backlog !== undefined && { backlog }) }
}
