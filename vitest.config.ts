import { defineConfig } from 'vitest/config'

// Multi-process tests fork real primaries and workers: keep two test files at a time on a 2-core
// machine, and give process-level tests generous bounds (they assert behaviour, not speed).
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 30_000,
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: 'test/tsconfig.json' },
  },
})
