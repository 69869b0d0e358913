import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  countCpuList,
  decideMemoryLimit,
  decideWorkers,
  type HostReading,
  ownHeapFlag,
  parseMountinfo,
  planHeap,
  readHost,
} from './sizing.js'

const roots: string[] = []
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true })
})

/** Writes a fixture tree: { 'proc/self/cgroup': '...', ... } under a fresh temp root. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'shoal-sizing-'))
  roots.push(root)
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  return root
}

const GiB = 1024 ** 3
const host = (over: Partial<HostReading> = {}): HostReading => ({
  affinityCpus: undefined,
  quotaCpus: undefined,
  memoryLimitBytes: undefined,
  availableParallelism: 64,
  totalMemoryBytes: 256 * GiB,
  ...over,
})
const read = (root: string, availableParallelism = 64) => readHost(root, { availableParallelism, totalMemoryBytes: 256 * GiB })

const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n'
// This machine's layout: every v1 controller on its own, plus an empty unified hierarchy.
const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
  '33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct',
  '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
  '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
].join('\n')

describe('decideWorkers', () => {
  it('takes SHOAL_WORKERS first, then WEB_CONCURRENCY, over any quota', () => {
    expect(decideWorkers({ SHOAL_WORKERS: '3', WEB_CONCURRENCY: '5' }, host({ quotaCpus: 1 }))).toEqual({
      workers: 3,
      source: 'SHOAL_WORKERS',
      reason: 'SHOAL_WORKERS=3',
    })
    expect(decideWorkers({ WEB_CONCURRENCY: '5' }, host()).workers).toBe(5)
  })

  it('ignores an env value that is not a positive integer, and says so', () => {
    const d = decideWorkers({ SHOAL_WORKERS: 'lots', WEB_CONCURRENCY: '0' }, host({ quotaCpus: 2 }))
    expect(d.workers).toBe(2)
    expect(d.reason).toContain('SHOAL_WORKERS="lots" is not a positive integer')
  })

  it('takes the least of affinity, quota and availableParallelism', () => {
    expect(decideWorkers({}, host({ quotaCpus: 2.5 }))).toEqual({ workers: 2, source: 'cgroup quota', reason: 'cgroup quota 2.5 CPUs' })
    expect(decideWorkers({}, host({ quotaCpus: 8, affinityCpus: 1 }))).toMatchObject({ workers: 1, source: 'affinity' })
    expect(decideWorkers({}, host({ availableParallelism: 2, quotaCpus: 4 }))).toMatchObject({
      workers: 2,
      source: 'availableParallelism',
    })
  })

  it('runs at least 1 worker under a quota below one CPU', () => {
    expect(decideWorkers({}, host({ quotaCpus: 0.5 }))).toMatchObject({ workers: 1, reason: 'cgroup quota 0.5 CPUs' })
  })
})

describe('readHost with fixture trees', () => {
  it('cgroup v2: walks up the ancestors and takes the tightest cpu.max (nested)', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/kubepods/pod1/app\n',
      'sys/fs/cgroup/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/kubepods/cpu.max': '400000 100000\n',
      'sys/fs/cgroup/kubepods/pod1/cpu.max': '150000 100000\n', // the pod's limit: 1.5
      'sys/fs/cgroup/kubepods/pod1/app/cpu.max': 'max 100000\n', // the container itself: none
      'sys/fs/cgroup/kubepods/pod1/memory.max': `${GiB}\n`,
      'sys/fs/cgroup/kubepods/pod1/app/memory.max': 'max\n',
    })
    const h = read(root)
    expect(h.quotaCpus).toBe(1.5)
    expect(h.memoryLimitBytes).toBe(GiB)
    expect(decideWorkers({}, h)).toMatchObject({ workers: 1, source: 'cgroup quota' })
  })

  it('cgroup v2: `max` everywhere is no quota (a Kubernetes CPU request without a limit)', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/\n',
      'sys/fs/cgroup/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/memory.max': 'max\n',
    })
    expect(read(root, 64)).toMatchObject({ quotaCpus: undefined, memoryLimitBytes: undefined })
    expect(decideWorkers({}, read(root, 64)).workers).toBe(64)
  })

  it('cgroup v2 in a cgroup namespace: the mount root is the container (`0::/`)', () => {
    const root = tree({
      'proc/self/mountinfo': '40 30 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n',
      'proc/self/cgroup': '0::/docker/abc\n',
      'sys/fs/cgroup/cpu.max': '200000 100000\n',
    })
    expect(read(root).quotaCpus).toBe(2)
  })

  it('cgroup v1: cfs quota / period found through mountinfo at a non-standard mount point (nested)', () => {
    const root = tree({
      'proc/self/mountinfo': [
        '25 20 0:21 / /mnt/cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
        '26 20 0:22 / /mnt/cg/memory rw - cgroup cgroup rw,memory',
      ].join('\n'),
      'proc/self/cgroup': '4:memory:/job/a\n3:cpu,cpuacct:/job/a\n1:name=systemd:/\n',
      'mnt/cg/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'mnt/cg/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      'mnt/cg/cpu,cpuacct/job/cpu.cfs_quota_us': '300000\n',
      'mnt/cg/cpu,cpuacct/job/cpu.cfs_period_us': '100000\n',
      'mnt/cg/cpu,cpuacct/job/a/cpu.cfs_quota_us': '50000\n', // 0.5 CPU
      'mnt/cg/cpu,cpuacct/job/a/cpu.cfs_period_us': '100000\n',
      'mnt/cg/memory/memory.limit_in_bytes': '9223372036854771712\n', // "unlimited"
      'mnt/cg/memory/job/a/memory.limit_in_bytes': `${512 * 1024 * 1024}\n`,
    })
    const h = read(root)
    expect(h.quotaCpus).toBe(0.5)
    expect(h.memoryLimitBytes).toBe(512 * 1024 * 1024)
    expect(decideWorkers({}, h)).toEqual({ workers: 1, source: 'cgroup quota', reason: 'cgroup quota 0.5 CPUs' })
  })

  it('cgroup v1 with -1 and the unlimited memory value: no quota, no limit (this machine at the root)', () => {
    const root = tree({
      'proc/self/mountinfo': V1_MOUNTS,
      'proc/self/cgroup': '4:memory:/\n2:cpuacct:/\n1:cpu:/\n0::/\n',
      'sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n',
      'sys/fs/cgroup/unified/cgroup.controllers': '',
    })
    expect(read(root, 2)).toMatchObject({ quotaCpus: undefined, memoryLimitBytes: undefined })
  })

  it('hybrid: a v1 cpu quota counts beside a unified hierarchy without the cpu controller', () => {
    const root = tree({
      'proc/self/mountinfo': V1_MOUNTS,
      'proc/self/cgroup': '1:cpu:/shoal-test\n0::/\n',
      'sys/fs/cgroup/cpu/shoal-test/cpu.cfs_quota_us': '100000\n',
      'sys/fs/cgroup/cpu/shoal-test/cpu.cfs_period_us': '100000\n',
    })
    expect(decideWorkers({}, read(root, 2))).toEqual({ workers: 1, source: 'cgroup quota', reason: 'cgroup quota 1 CPU' })
  })

  it('affinity from Cpus_allowed_list', () => {
    const root = tree({ 'proc/self/status': 'Name:\tnode\nCpus_allowed:\t1\nCpus_allowed_list:\t0\n' })
    expect(read(root).affinityCpus).toBe(1)
    expect(decideWorkers({}, read(root))).toMatchObject({ workers: 1, source: 'affinity', reason: 'CPU affinity 1 CPU' })
  })

  it('a memory limit at or above the machine memory is none', () => {
    const root = tree({
      'proc/self/mountinfo': V2_MOUNT,
      'proc/self/cgroup': '0::/\n',
      'sys/fs/cgroup/memory.max': `${300 * GiB}\n`,
    })
    expect(read(root).memoryLimitBytes).toBeUndefined()
  })

  it('no /proc at all (another OS, a sandbox): nothing but availableParallelism', () => {
    expect(read(tree({}), 3)).toMatchObject({ affinityCpus: undefined, quotaCpus: undefined, memoryLimitBytes: undefined })
  })
})

describe('parsing', () => {
  it('counts CPU lists', () => {
    expect(countCpuList('0-3,8,10-11')).toBe(7)
    expect(countCpuList('0')).toBe(1)
    expect(countCpuList('x')).toBeUndefined()
  })

  it('reads only cgroup mounts from mountinfo, with escaped mount points', () => {
    const mounts = parseMountinfo('50 1 0:5 / /a\\040b rw - cgroup cgroup rw,cpu\n51 1 0:6 / /proc rw - proc proc rw\n')
    expect(mounts).toEqual([{ version: 1, controllers: ['rw', 'cpu'], root: '/', mountPoint: '/a b' }])
  })
})

describe('planHeap', () => {
  it('splits a limit between the primary and the workers, keeping room off-heap', () => {
    expect(planHeap(2 * GiB, 2)).toEqual({ limitMb: 2048, shareMb: 960, heapMb: 720 })
    expect(planHeap(256 * 1024 * 1024, 1)).toEqual({ limitMb: 256, shareMb: 192, heapMb: 144 })
    expect(planHeap(undefined, 4)).toBeUndefined()
  })

  it('leaves an app that sizes its own heap alone', () => {
    expect(ownHeapFlag(['--max-old-space-size=300'], undefined)).toBe('execArgv')
    expect(ownHeapFlag(['--max_old_space_size', '300'], undefined)).toBe('execArgv')
    expect(ownHeapFlag([], '--enable-source-maps --max-old-space-size=512')).toBe('NODE_OPTIONS')
    expect(ownHeapFlag(['--max-semi-space-size=16'], '--inspect')).toBeUndefined()
  })
})

describe('decideMemoryLimit', () => {
  it('SHOAL_MEMORY_MB wins over the cgroup; junk is ignored', () => {
    expect(decideMemoryLimit({ SHOAL_MEMORY_MB: '1024' }, { memoryLimitBytes: 4 * GiB })).toBe(GiB)
    expect(decideMemoryLimit({ SHOAL_MEMORY_MB: 'x' }, { memoryLimitBytes: 4 * GiB })).toBe(4 * GiB)
    expect(decideMemoryLimit({}, { memoryLimitBytes: undefined })).toBeUndefined()
  })
})
