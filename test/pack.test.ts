// What a user gets from the registry: the four packages packed with `pnpm pack` (its prepack builds
// them), installed from the tarballs into fresh apps outside the workspace with npm and with pnpm,
// then run: a CommonJS and an ESM Express app (the ESM one with @shoal/metrics and prom-client), and
// a TypeScript Fastify app compiled by TypeScript 5 under `nodenext` and `bundler`. Skipped, with the reason, only when the npm registry is unreachable.
import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Fixture } from './helpers/fixture.js'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))
const PACKAGES = ['core', 'express', 'fastify', 'metrics'] as const

async function registryReachable(): Promise<string | undefined> {
  try {
    const res = await fetch('https://registry.npmjs.org/-/ping', { signal: AbortSignal.timeout(5000) })
    return res.ok ? undefined : `registry answered ${res.status}`
  } catch (err) {
    return `registry unreachable: ${(err as Error).message}`
  }
}

const offline = await registryReachable()
if (offline) console.warn(`pack.test.ts skipped: ${offline}`)

// The installs must see neither the monorepo's pnpm/npm settings nor the ones `pnpm test` exports.
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|pnpm_|PNPM_)/i.test(k)))

async function sh(cwd: string, cmd: string, args: string[], timeoutMs = 180_000): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args, { cwd, env: cleanEnv, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 })
    return stdout + stderr
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string }
    throw new Error(`${cmd} ${args.join(' ')} in ${cwd} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`)
  }
}

function write(dir: string, files: Record<string, string>): void {
  mkdirSync(dir, { recursive: true })
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
}

const SHARED = `{ workers: 1, logger: 'silent', shared: { usersCount: { value: 42 } } }`
const REPORT = `if ('status' in handle) console.log('@@' + JSON.stringify({ ev: 'listening', address: handle.status().workers[0].address }))`

const expressCjs = `const { clustered, clusteredListen } = require('@shoal/express')
const express = require('express')
const app = express()
app.use(clustered())
app.get('/', (req, res) => res.json({ app: 'cjs', workerId: req.cluster.workerId, users: req.cluster.shared.usersCount }))
clusteredListen(app, { port: 0, host: '127.0.0.1' }, ${SHARED}).then((handle) => { ${REPORT} })
`
const expressEsm = `import { clustered, clusteredListen } from '@shoal/express'
import express from 'express'
import { clusterMetrics } from '@shoal/metrics'
const app = express()
app.use(clustered())
app.get('/metrics', clusterMetrics())
app.get('/', (req, res) => res.json({ app: 'esm', workerId: req.cluster.workerId, users: req.cluster.shared.usersCount }))
const handle = await clusteredListen(app, { port: 0, host: '127.0.0.1' }, ${SHARED})
${REPORT}
`
// Typed through core, which this app lists itself (the README's advice for augmenting '@shoal/core').
const expressTs = `import express from 'express'
import { clustered } from '@shoal/express'
declare module '@shoal/core' {
  interface SharedValues { usersCount: number }
}
const app = express()
app.use(clustered())
app.get('/', (req, res) => {
  const users: number | undefined = req.cluster.shared.usersCount
  // @ts-expect-error usersCount is typed, not any
  const wrong: string | undefined = req.cluster.shared.usersCount
  res.json({ users, wrong })
})
`
// Only @shoal/fastify is installed: the augmentation goes through the package the user installed.
const fastifyTs = `import Fastify from 'fastify'
import { clusterPlugin, clusteredListen } from '@shoal/fastify'
declare module '@shoal/fastify' {
  interface SharedValues { usersCount: number }
}
const app = Fastify()
await app.register(clusterPlugin)
app.get('/', async (request) => {
  const users: number | undefined = request.cluster.shared.usersCount
  // @ts-expect-error usersCount is typed, not any
  const wrong: string | undefined = request.cluster.shared.usersCount
  return { app: 'ts', workerId: request.cluster.workerId, users, wrong }
})
const handle = await clusteredListen(app, { port: 0, host: '127.0.0.1' }, ${SHARED})
${REPORT}
`
const tsconfig = (compilerOptions: Record<string, unknown>) =>
  JSON.stringify({
    // skipLibCheck as most apps have it: checking @types/node and fastify's own .d.ts costs half the time.
    compilerOptions: { target: 'es2022', strict: true, skipLibCheck: true, types: ['node'], ...compilerOptions },
    files: ['server.ts'],
  })

type Pm = 'npm' | 'pnpm'

function manifest(pm: Pm, tarballs: string, deps: Record<string, string>): string {
  const core = `file:${join(tarballs, 'shoal-core-0.1.0.tgz')}`
  // The adapters depend on @shoal/core@^0.1.0, which only the tarball provides here.
  const overrides = { '@shoal/core': deps['@shoal/core'] ? (pm === 'npm' ? '$@shoal/core' : core) : core }
  return JSON.stringify({
    name: 'app',
    private: true,
    type: 'module',
    dependencies: deps,
    ...(pm === 'npm' ? { overrides } : { pnpm: { overrides } }),
  })
}

describe.skipIf(offline !== undefined)('the packed packages in fresh apps', () => {
  let base = ''
  let tarballs = ''
  const apps = (pm: Pm, name: string) => join(base, pm, name)

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'shoal-pack-'))
    tarballs = join(base, 'tarballs')
    // Pack a copy of the sources, so the prepack build does not rewrite the dist/ other test files run.
    const ws = join(base, 'ws')
    cpSync(join(root, 'tsconfig.base.json'), join(ws, 'tsconfig.base.json'))
    writeFileSync(join(ws, 'package.json'), '{ "name": "ws", "private": true }')
    writeFileSync(join(ws, 'pnpm-workspace.yaml'), 'packages:\n  - packages/*\n')
    for (const p of PACKAGES) {
      const from = join(root, 'packages', p)
      const to = join(ws, 'packages', p)
      for (const f of readdirSync(from)) if (f !== 'node_modules' && f !== 'dist') cpSync(join(from, f), join(to, f), { recursive: true })
      symlinkSync(join(from, 'node_modules'), join(to, 'node_modules')) // the compiler and types; nothing installs here
      await sh(to, 'pnpm', ['pack', '--pack-destination', tarballs])
    }
    const pkg = (name: string) => `file:${join(tarballs, `shoal-${name}-0.1.0.tgz`)}`
    const ts = { typescript: '^5.9.0', '@types/node': '^24.0.0' }
    await Promise.all(
      (['npm', 'pnpm'] as const).flatMap((pm) => {
        write(apps(pm, 'express'), {
          'package.json': manifest(pm, tarballs, {
            '@shoal/express': pkg('express'),
            '@shoal/core': pkg('core'),
            '@shoal/metrics': pkg('metrics'),
            'prom-client': '^15.0.0',
            // Both majors of the peer range: Express 4 (still most apps) with npm, Express 5 with pnpm.
            ...(pm === 'npm' ? { express: '~4.21.0', '@types/express': '^4.17.0' } : { express: '^5.0.0', '@types/express': '^5.0.0' }),
            ...ts,
          }),
          'server.cjs': expressCjs,
          'server.mjs': expressEsm,
          'server.ts': expressTs,
          'tsconfig.json': tsconfig({ module: 'nodenext', noEmit: true }),
        })
        write(apps(pm, 'fastify'), {
          'package.json': manifest(pm, tarballs, { '@shoal/fastify': pkg('fastify'), fastify: '^5.0.0', ...ts }),
          'server.ts': fastifyTs,
          'tsconfig.nodenext.json': tsconfig({ module: 'nodenext', outDir: 'out-nodenext' }),
          'tsconfig.bundler.json': tsconfig({ module: 'preserve', moduleResolution: 'bundler', outDir: 'out-bundler' }),
        })
        const install = pm === 'npm' ? ['install', '--prefer-offline', '--no-audit', '--no-fund'] : ['install', '--prefer-offline']
        return ['express', 'fastify'].map((name) => sh(apps(pm, name), pm, install))
      }),
    )
  }, 240_000)

  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true })
  })

  it('installs Express 4 with npm and Express 5 with pnpm', async () => {
    const version = (pm: Pm) => sh(apps(pm, 'express'), process.execPath, ['-p', "require('express/package.json').version"])
    expect(await version('npm')).toMatch(/^4\.21\./)
    expect(await version('pnpm')).toMatch(/^5\./)
  })

  it('ships dist, README and LICENSE, no source maps, and a caret range on core', async () => {
    for (const p of PACKAGES) {
      const files = (await sh(base, 'tar', ['tzf', join(tarballs, `shoal-${p}-0.1.0.tgz`)])).split('\n').filter(Boolean)
      expect(files).toEqual(
        expect.arrayContaining(['package/README.md', 'package/LICENSE', 'package/dist/index.js', 'package/dist/index.d.ts']),
      )
      expect(files.filter((f) => f.endsWith('.map'))).toEqual([])
    }
    const manifestText = await sh(base, 'tar', ['xzOf', join(tarballs, 'shoal-fastify-0.1.0.tgz'), 'package/package.json'])
    expect(JSON.parse(manifestText).dependencies['@shoal/core']).toBe('^0.1.0')
  })

  async function serves(file: string, cwd: string, expected: Record<string, unknown>, metrics = false): Promise<void> {
    const f = new Fixture(join(cwd, file))
    const { address } = await f.event('listening', undefined, 1, 30_000)
    const body = await (await fetch(String(address))).json()
    expect(body).toMatchObject({ users: 42, ...expected })
    if (metrics) {
      // @shoal/metrics from its tarball, with the app's prom-client: one worker answered the primary.
      const text = await (await fetch(new URL('/metrics', String(address)))).text()
      expect(text).toMatch(/^shoal_metrics_workers\{state="answered"\} 1$/m)
    }
    f.signal('SIGTERM')
    expect(await f.waitForExit(20_000)).toEqual({ code: 0, signal: null })
  }

  describe.each(['npm', 'pnpm'] as const)('installed with %s', (pm) => {
    it('runs a CommonJS Express app (require)', async () => {
      await serves('server.cjs', apps(pm, 'express'), { app: 'cjs', workerId: 1 })
    }, 120_000)

    it('runs an ESM Express app, with @shoal/metrics', async () => {
      await serves('server.mjs', apps(pm, 'express'), { app: 'esm', workerId: 1 }, true)
    }, 120_000)

    it('types usersCount through @shoal/core when the app lists core, and installs one copy of core', async () => {
      await sh(apps(pm, 'express'), join(apps(pm, 'express'), 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'])
      // The app's @shoal/core and the one @shoal/express imports are the same files.
      const where = `const { createRequire } = require('node:module'); const fs = require('node:fs')
const fromApp = require.resolve('@shoal/core/package.json')
const fromAdapter = createRequire(fs.realpathSync(require.resolve('@shoal/express/package.json'))).resolve('@shoal/core/package.json')
console.log(JSON.stringify([fs.realpathSync(fromApp), fs.realpathSync(fromAdapter)]))`
      const real = new Set(JSON.parse(await sh(apps(pm, 'express'), process.execPath, ['-e', where])) as string[])
      expect(real.size).toBe(1)
    }, 120_000)

    it.each(['nodenext', 'bundler'])(
      'compiles the Fastify app with TypeScript 5 under %s (only @shoal/fastify installed) and runs it',
      async (mode) => {
        const cwd = apps(pm, 'fastify')
        const version = await sh(cwd, join(cwd, 'node_modules/.bin/tsc'), ['--version'])
        expect(version).toMatch(/Version 5\./)
        await sh(cwd, join(cwd, 'node_modules/.bin/tsc'), ['-p', `tsconfig.${mode}.json`])
        await serves(`out-${mode}/server.js`, cwd, { app: 'ts', workerId: 1 })
      },
      120_000,
    )
  })
})
