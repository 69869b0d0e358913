// Compiled by vitest's typecheck: the augmentation users write once types every adapter.
import type { ClusterContext, ClusterOptions, JobRun, Primary, SharedSnapshot } from '@shoal/core'
import { clustered } from '@shoal/express'
import { clusterPlugin } from '@shoal/fastify'
import express from 'express'
import Fastify from 'fastify'
import { describe, expectTypeOf, it } from 'vitest'

declare module '@shoal/core' {
  interface SharedValues {
    usersCount: number
    motto: string
  }
}

describe('SharedValues augmentation', () => {
  it('types request.cluster.shared in Express', () => {
    const app = express()
    app.use(clustered())
    app.get('/', (req, res) => {
      expectTypeOf(req.cluster).toEqualTypeOf<ClusterContext>()
      expectTypeOf(req.cluster.shared.usersCount).toEqualTypeOf<number | undefined>()
      expectTypeOf(req.cluster.workerId).toEqualTypeOf<number>()
      // @ts-expect-error an undeclared key does not compile
      req.cluster.shared.nope
      res.end()
    })
  })

  it('types request.cluster.shared in Fastify', async () => {
    const app = Fastify()
    await app.register(clusterPlugin)
    app.get('/', async (request) => {
      expectTypeOf(request.cluster.shared.motto).toEqualTypeOf<string | undefined>()
      expectTypeOf(app.cluster.request<number>('x')).toEqualTypeOf<Promise<number>>()
      // @ts-expect-error an undeclared key does not compile
      request.cluster.shared.nope
      // @ts-expect-error the snapshot is read-only
      request.cluster.shared.usersCount = 3
      return {}
    })
  })

  it('types the shared sources against SharedValues', () => {
    expectTypeOf<SharedSnapshot>().toEqualTypeOf<Readonly<Partial<{ usersCount: number; motto: string }>>>()
  })
})

describe('jobs and onPrimary', () => {
  it('types the primary hook and a job run', () => {
    expectTypeOf<Parameters<NonNullable<ClusterOptions['onPrimary']>>[0]>().toEqualTypeOf<Primary>()
    expectTypeOf<Parameters<NonNullable<ClusterOptions['jobs']>[string]['run']>[0]>().toEqualTypeOf<JobRun>()
    // one of everyMs or cron, not both
    expectTypeOf<{ everyMs: 10; cron: '* * * * *'; run: () => void }>().not.toMatchTypeOf<NonNullable<ClusterOptions['jobs']>[string]>()
    expectTypeOf<{ cron: '0 3 * * *'; run: () => void }>().toMatchTypeOf<NonNullable<ClusterOptions['jobs']>[string]>()
  })
})
