import { defineConfig } from 'vitest/config'

// `pnpm test:chaos`: the reliability suite alone (it also runs as part of `npm test`).
export default defineConfig({
  test: { include: ['test/chaos/**/*.test.ts'], pool: 'forks', maxWorkers: 2, testTimeout: 120_000, hookTimeout: 30_000 },
})
