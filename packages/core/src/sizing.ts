/**
 * Right-sizing in a container: how many workers `'auto'` means, and how much heap each may take.
 * Pure functions decide; `readHost` is the one thin reader (of /proc and the cgroup files, under an
 * injectable root so tests feed it fixture trees). Linux only; elsewhere every reading is undefined.
 *
 * Why not `os.availableParallelism()` alone: Node 20's libuv ignores the cgroup CPU quota, later
 * releases read it only on some layouts (not a v1 `cpu` hierarchy mounted on its own), and none
 * sees a Kubernetes CPU request (no quota at all): `SHOAL_WORKERS` / `WEB_CONCURRENCY` carry it in.
 */
import { readFileSync } from 'node:fs'
import { availableParallelism, totalmem } from 'node:os'
import { join } from 'node:path'

/** What the host says about this process's CPUs and memory; undefined where it says nothing. */
export interface HostReading {
  /** CPUs in this process's affinity mask (`Cpus_allowed_list`), as `taskset` sets it. */
  affinityCpus: number | undefined
  /** The tightest cgroup CPU quota on the way to the root, in CPUs (may be fractional, e.g. 2.5). */
  quotaCpus: number | undefined
  /** The tightest cgroup memory limit on the way to the root, in bytes. */
  memoryLimitBytes: number | undefined
  /** `os.availableParallelism()`. */
  availableParallelism: number
  /** `os.totalmem()`. */
  totalMemoryBytes: number
}

export type WorkersSource = 'option' | 'SHOAL_WORKERS' | 'WEB_CONCURRENCY' | 'affinity' | 'cgroup quota' | 'availableParallelism'

/** How many workers, and why: logged once at start ("2 workers: cgroup quota 2.5 CPUs"). */
export interface WorkersDecision {
  workers: number
  source: WorkersSource
  /** Human reason, e.g. `cgroup quota 2.5 CPUs`. */
  reason: string
}

const MAX_WORKERS = 1024

function envCount(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined
  const n = Number(value.trim())
  return Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : undefined
}

function cpus(n: number): string {
  return `${Math.round(n * 100) / 100} CPU${n === 1 ? '' : 's'}`
}

/**
 * `'auto'`: the first of `SHOAL_WORKERS`, `WEB_CONCURRENCY`, else the least of CPU affinity, the
 * cgroup quota (rounded down: 2.5 CPUs run 2 busy workers without throttling) and
 * `availableParallelism`; at least 1. An env value that is not a positive integer is ignored (and named
 * in the reason) rather than failing the start.
 */
export function decideWorkers(env: Readonly<Record<string, string | undefined>>, host: HostReading): WorkersDecision {
  const ignored: string[] = []
  for (const name of ['SHOAL_WORKERS', 'WEB_CONCURRENCY'] as const) {
    const raw = env[name]
    const n = envCount(raw)
    if (n !== undefined) return { workers: n, source: name, reason: `${name}=${raw?.trim()}` }
    if (raw !== undefined && raw.trim() !== '') ignored.push(`${name}=${JSON.stringify(raw)} is not a positive integer`)
  }
  const candidates: { n: number; source: WorkersSource; reason: string }[] = [
    {
      n: host.availableParallelism,
      source: 'availableParallelism',
      reason: `os.availableParallelism() ${host.availableParallelism}`,
    },
  ]
  if (host.affinityCpus !== undefined)
    candidates.push({ n: host.affinityCpus, source: 'affinity', reason: `CPU affinity ${cpus(host.affinityCpus)}` })
  if (host.quotaCpus !== undefined) {
    candidates.push({ n: Math.floor(host.quotaCpus), source: 'cgroup quota', reason: `cgroup quota ${cpus(host.quotaCpus)}` })
  }
  // Strictly less wins, so a tie keeps the earlier (more general) source.
  let best = candidates[0] as (typeof candidates)[number]
  for (const c of candidates) if (c.n < best.n) best = c
  const workers = Math.min(MAX_WORKERS, Math.max(1, best.n))
  const reason = [best.reason, ...ignored].join('; ')
  return { workers, source: best.source, reason }
}

/** The heap each worker gets, from the memory limit. */
export interface HeapPlan {
  /** The container's memory limit. */
  limitMb: number
  /** What each worker may use in all (RSS): `maxMemoryMb: 'auto'` replaces a worker past it. */
  shareMb: number
  /** `--max-old-space-size` for each worker: the share minus room for off-heap memory. */
  heapMb: number
}

/** What the primary keeps for itself: 128 MiB, or a quarter of a small limit. */
export function primaryReserveMb(limitMb: number): number {
  return Math.min(128, Math.floor(limitMb / 4))
}

/** The old-space heap's part of a worker's share; the rest is code, stacks, buffers, young space. */
export const HEAP_FRACTION = 0.75

/** Splits a memory limit between the primary and `workers` workers; undefined without a limit. */
export function planHeap(limitBytes: number | undefined, workers: number): HeapPlan | undefined {
  if (limitBytes === undefined || workers < 1) return undefined
  const limitMb = Math.floor(limitBytes / 1024 / 1024)
  const shareMb = Math.max(32, Math.floor((limitMb - primaryReserveMb(limitMb)) / workers))
  return { limitMb, shareMb, heapMb: Math.max(16, Math.floor(shareMb * HEAP_FRACTION)) }
}

const HEAP_FLAG = /--max[-_]old[-_]space[-_]size(=|\s|$)/

/** Where the app already sizes its heap itself (we then leave it alone), or undefined. */
export function ownHeapFlag(execArgv: readonly string[], nodeOptions: string | undefined): string | undefined {
  if (execArgv.some((a) => HEAP_FLAG.test(a))) return 'execArgv'
  if (nodeOptions !== undefined && HEAP_FLAG.test(nodeOptions)) return 'NODE_OPTIONS'
  return undefined
}

// ---- parsing (pure) ----

/** `0-3,8,10-11` → 7. */
export function countCpuList(list: string): number | undefined {
  let n = 0
  for (const part of list.trim().split(',')) {
    if (part === '') continue
    const [a, b] = part.split('-').map(Number)
    if (a === undefined || !Number.isInteger(a)) return undefined
    const end = b === undefined ? a : b
    if (!Number.isInteger(end) || end < a) return undefined
    n += end - a + 1
  }
  return n > 0 ? n : undefined
}

export interface CgroupMount {
  version: 1 | 2
  /** v1: the controllers of this hierarchy (`cpu`, `cpuacct`, `memory`, ...). */
  controllers: string[]
  /** The cgroup path this mount shows at its mount point (`/` unless the mount is a sub-tree). */
  root: string
  mountPoint: string
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)))
}

/** The cgroup mounts in `/proc/self/mountinfo` (never an assumed `/sys/fs/cgroup` layout). */
export function parseMountinfo(text: string): CgroupMount[] {
  const mounts: CgroupMount[] = []
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ')
    if (dash < 0) continue
    const left = line.slice(0, dash).split(' ')
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ')
    const root = left[3]
    const mountPoint = left[4]
    if (root === undefined || mountPoint === undefined) continue
    if (fstype === 'cgroup2') mounts.push({ version: 2, controllers: [], root: unescapeMount(root), mountPoint: unescapeMount(mountPoint) })
    else if (fstype === 'cgroup') {
      mounts.push({ version: 1, controllers: superOptions.split(','), root: unescapeMount(root), mountPoint: unescapeMount(mountPoint) })
    }
  }
  return mounts
}

export interface CgroupMembership {
  /** `0::/path` (v2), or undefined. */
  v2: string | undefined
  /** v1 controller → path. */
  v1: Map<string, string>
}

export function parseProcCgroup(text: string): CgroupMembership {
  const v1 = new Map<string, string>()
  let v2: string | undefined
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim())
    if (!m) continue
    const [, id, controllers = '', path = '/'] = m
    if (id === '0' && controllers === '') v2 = path
    else for (const c of controllers.split(',')) v1.set(c, path)
  }
  return { v2, v1 }
}

/**
 * The directories from this process's cgroup up to the mount's top, nearest first: limits apply
 * from every ancestor, so the tightest one counts. A path outside the mount's root (another
 * namespace's view) yields just the mount point.
 */
export function cgroupDirs(mount: CgroupMount, path: string): string[] {
  let rel: string
  if (mount.root === '/') rel = path
  else if (path === mount.root || path.startsWith(`${mount.root}/`)) rel = path.slice(mount.root.length)
  else rel = '/'
  const parts = rel.split('/').filter((p) => p !== '' && p !== '..')
  const dirs: string[] = []
  for (let i = parts.length; i >= 0; i--) dirs.push(join(mount.mountPoint, ...parts.slice(0, i)))
  return dirs
}

/** v2 `cpu.max`: `max 100000` → undefined, `250000 100000` → 2.5. */
export function parseCpuMax(text: string): number | undefined {
  const [quota, period = '100000'] = text.trim().split(/\s+/)
  if (quota === undefined || quota === 'max') return undefined
  const q = Number(quota)
  const p = Number(period)
  return q > 0 && p > 0 ? q / p : undefined
}

/** v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`: -1 → undefined. */
export function parseCfs(quotaText: string, periodText: string): number | undefined {
  const q = Number(quotaText.trim())
  const p = Number(periodText.trim())
  return q > 0 && p > 0 ? q / p : undefined
}

/** Above this a memory "limit" is the kernel's way of saying none (v1 prints 2^63 rounded to a page). */
const NO_LIMIT_BYTES = 2 ** 60

/** v2 `memory.max` / v1 `memory.limit_in_bytes`: `max` or a huge number → undefined. */
export function parseMemoryLimit(text: string): number | undefined {
  const t = text.trim()
  if (t === 'max' || t === '') return undefined
  const n = Number(t)
  return Number.isFinite(n) && n > 0 && n < NO_LIMIT_BYTES ? n : undefined
}

function minDefined(values: (number | undefined)[]): number | undefined {
  const defined = values.filter((v): v is number => v !== undefined)
  return defined.length > 0 ? Math.min(...defined) : undefined
}

// ---- the thin reader ----

type Read = (path: string) => string | undefined

function fileReader(root: string): Read {
  return (path) => {
    try {
      return readFileSync(join(root, path), 'utf8')
    } catch {
      return undefined
    }
  }
}

/** The tightest CPU quota and memory limit over every cgroup mount this process sits in (v1 and v2, hybrid too). */
export function readCgroupLimits(read: Read): { quotaCpus: number | undefined; memoryLimitBytes: number | undefined } {
  const mountinfo = read('/proc/self/mountinfo')
  const own = read('/proc/self/cgroup')
  if (mountinfo === undefined || own === undefined) return { quotaCpus: undefined, memoryLimitBytes: undefined }
  const membership = parseProcCgroup(own)
  const quotas: (number | undefined)[] = []
  const memory: (number | undefined)[] = []
  for (const mount of parseMountinfo(mountinfo)) {
    if (mount.version === 2) {
      if (membership.v2 === undefined) continue
      for (const dir of cgroupDirs(mount, membership.v2)) {
        const max = read(join(dir, 'cpu.max'))
        if (max !== undefined) quotas.push(parseCpuMax(max))
        const mem = read(join(dir, 'memory.max'))
        if (mem !== undefined) memory.push(parseMemoryLimit(mem))
      }
      continue
    }
    if (mount.controllers.includes('cpu')) {
      const path = membership.v1.get('cpu')
      if (path !== undefined) {
        for (const dir of cgroupDirs(mount, path)) {
          const q = read(join(dir, 'cpu.cfs_quota_us'))
          const p = read(join(dir, 'cpu.cfs_period_us'))
          if (q !== undefined && p !== undefined) quotas.push(parseCfs(q, p))
        }
      }
    }
    if (mount.controllers.includes('memory')) {
      const path = membership.v1.get('memory')
      if (path !== undefined) {
        for (const dir of cgroupDirs(mount, path)) {
          const limit = read(join(dir, 'memory.limit_in_bytes'))
          if (limit !== undefined) memory.push(parseMemoryLimit(limit))
        }
      }
    }
  }
  return { quotaCpus: minDefined(quotas), memoryLimitBytes: minDefined(memory) }
}

/** `Cpus_allowed_list` of `/proc/self/status`: the affinity mask `taskset` sets. */
export function readAffinity(read: Read): number | undefined {
  const status = read('/proc/self/status')
  const m = status === undefined ? null : /^Cpus_allowed_list:\s*(\S+)/m.exec(status)
  return m?.[1] === undefined ? undefined : countCpuList(m[1])
}

/**
 * The memory the cluster may use: `SHOAL_MEMORY_MB` when set (a Kubernetes memory *request* fed in
 * through the downward API with `divisor: 1Mi`, or a limit the cgroup does not show), else the host's limit.
 */
export function decideMemoryLimit(
  env: Readonly<Record<string, string | undefined>>,
  host: Pick<HostReading, 'memoryLimitBytes'>,
): number | undefined {
  const mb = Number(env.SHOAL_MEMORY_MB?.trim() || Number.NaN)
  if (Number.isInteger(mb) && mb > 0) return mb * 1024 * 1024
  return host.memoryLimitBytes
}

let hostOnce: HostReading | undefined

/**
 * Reads what the host says. `root` is `/` in production and a fixture tree in tests. The memory
 * limit also takes `process.constrainedMemory()` (Node's own cgroup reading) into account, and a
 * "limit" at or above the machine's memory is no limit.
 */
export function readHost(root = '/', extra: Partial<Pick<HostReading, 'availableParallelism' | 'totalMemoryBytes'>> = {}): HostReading {
  // The real host is read once per process: resolveOptions runs in every worker too.
  if (root === '/' && Object.keys(extra).length === 0) {
    hostOnce ??= readHost('/', { availableParallelism: availableParallelism() })
    return hostOnce
  }
  const read = fileReader(root)
  const linux = process.platform === 'linux'
  const { quotaCpus, memoryLimitBytes } = linux ? readCgroupLimits(read) : { quotaCpus: undefined, memoryLimitBytes: undefined }
  const totalMemoryBytes = extra.totalMemoryBytes ?? totalmem()
  const constrained = root === '/' ? process.constrainedMemory?.() : undefined
  const limit = minDefined([memoryLimitBytes, constrained !== undefined && constrained > 0 ? constrained : undefined])
  return {
    affinityCpus: linux ? readAffinity(read) : undefined,
    quotaCpus,
    memoryLimitBytes: limit !== undefined && limit < totalMemoryBytes ? limit : undefined,
    availableParallelism: extra.availableParallelism ?? availableParallelism(),
    totalMemoryBytes,
  }
}

/** What the primary applies at start: the workers' `execArgv`, the memory ceiling, and one log line. */
export interface ContainerPlan {
  execArgv: string[]
  /** `maxMemoryMb` resolved: `'auto'` is the heap plan's share (undefined without a known limit). */
  maxMemoryMb: number | undefined
  heap: HeapPlan | undefined
  /** Why the heap is not sized by shoal, when it is not. */
  heapSkipped: string | undefined
  /** "2 workers: cgroup quota 2.5 CPUs; heap 720 MB per worker (share 960 MB of a 2048 MB limit)" */
  message: string
}

export function planContainer(input: {
  decision: WorkersDecision
  maxMemoryMb: number | 'auto' | undefined
  memoryLimitBytes: number | undefined
  execArgv: readonly string[]
  /** NODE_OPTIONS as the workers will see it (the `env` option wins over the primary's). */
  nodeOptions: string | undefined
}): ContainerPlan {
  const { decision } = input
  const heap = planHeap(input.memoryLimitBytes, decision.workers)
  const own = ownHeapFlag(input.execArgv, input.nodeOptions)
  let heapSkipped: string | undefined
  if (!heap) heapSkipped = 'no memory limit known'
  else if (own) heapSkipped = `--max-old-space-size already set in ${own}`
  const execArgv = heap && !own ? [...input.execArgv, `--max-old-space-size=${heap.heapMb}`] : [...input.execArgv]
  const maxMemoryMb = input.maxMemoryMb === 'auto' ? heap?.shareMb : input.maxMemoryMb
  const plural = decision.workers === 1 ? 'worker' : 'workers'
  let message = `${decision.workers} ${plural}: ${decision.reason}`
  if (heap && !own) message += `; heap ${heap.heapMb} MB per worker (share ${heap.shareMb} MB of a ${heap.limitMb} MB memory limit)`
  else if (heap) message += `; memory limit ${heap.limitMb} MB, ${heapSkipped}`
  if (input.maxMemoryMb === 'auto')
    message += maxMemoryMb === undefined ? '; maxMemoryMb auto: off, no memory limit known' : `; maxMemoryMb auto: ${maxMemoryMb}`
  return { execArgv, maxMemoryMb, heap, heapSkipped, message }
}
