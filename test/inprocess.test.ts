// The adapters in this process, unclustered (workers: 0 or no clusteredListen at all).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { codes, context, getShared, runCluster, trackServer } from '@shoal/core'
import { clustered } from '@shoal/express'
import { clusterPlugin } from '@shoal/fastify'
import express from 'express'
import Fastify from 'fastify'
import request from 'supertest'
import { describe, expect, it } from 'vitest'
import { get } from './helpers/http.js'

function expressApp() {
  const app = express()
  app.use(clustered())
  app.get('/', (req, res) => {
    res.json({ workerId: req.cluster.workerId, pid: req.cluster.pid, shared: req.cluster.shared, own: Object.hasOwn(req, 'cluster') })
  })
  app.get('/slow', (_req, res) => {
    setTimeout(() => res.json({ slow: true }), 400)
  })
  return app
}

describe('express adapter, unclustered', () => {
  it('routes, and req.cluster is the one worker context (a prototype getter, not a per-request property)', async () => {
    const res = await request(expressApp()).get('/').expect(200)
    expect(res.body).toEqual({ workerId: 0, pid: process.pid, shared: {}, own: false })
  })

  it('serves a request that is in flight when draining starts, with Connection: close', async () => {
    const server = http.createServer(expressApp())
    const drain = trackServer(server)
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const { port } = server.address() as AddressInfo
    const agent = new http.Agent({ keepAlive: true })
    await get(`http://127.0.0.1:${port}/`, agent) // a warm keep-alive socket
    const slow = get(`http://127.0.0.1:${port}/slow`, agent)
    while (drain.inFlight === 0) await new Promise((r) => setTimeout(r, 5)) // the server has it
    const drained = drain.drain({ shutdownTimeoutMs: 5000, idleSocketGraceMs: 100 })
    expect(drain.closing).toBe(true)
    const reply = await slow
    expect(reply.status).toBe(200)
    expect(reply.headers.connection).toBe('close')
    expect(await drained).toBe('drained')
    agent.destroy()
  })
})

describe('fastify adapter, unclustered', () => {
  it('decorates request.cluster and fastify.cluster with the worker context', async () => {
    const app = Fastify()
    await app.register(clusterPlugin, { signals: false })
    app.get('/', async (request) => ({
      workerId: request.cluster.workerId,
      same: request.cluster === app.cluster,
      shared: request.cluster.shared,
    }))
    const res = await app.inject({ method: 'GET', url: '/' })
    expect(res.json()).toEqual({ workerId: 0, same: true, shared: {} })
    expect(app.cluster).toBe(context)
    await app.close()
  })
})

describe('runCluster with workers: 0', () => {
  it('computes shared values in-process and answers requests with the local handlers', async () => {
    let computes = 0
    const server = http.createServer((_req, res) => res.end(JSON.stringify(context.shared)))
    const handle = await runCluster(
      {
        workers: 0,
        signals: false,
        logger: 'silent',
        shared: { usersCount: { everyMs: 60_000, compute: async () => ++computes }, motto: { value: 'hi' } },
        handlers: { double: (n) => Number(n) * 2, boom: () => Promise.reject(new Error('nope')) },
      },
      () => ({ server, listen: () => new Promise<void>((r) => server.listen(0, '127.0.0.1', r)) }),
    )
    expect(handle.role).toBe('single')
    expect(getShared()).toEqual({ usersCount: 1, motto: 'hi' })
    expect(Object.isFrozen(getShared())).toBe(true)
    expect((await get(`${'address' in handle ? handle.address : ''}/`)).json()).toEqual({ usersCount: 1, motto: 'hi' })
    expect(await context.request('double', 21)).toBe(42)
    await expect(context.request('boom')).rejects.toMatchObject({ code: codes.SHOAL_ERR_HANDLER_FAILED })
    await expect(context.request('nobody')).rejects.toMatchObject({ code: codes.SHOAL_ERR_UNKNOWN_COMMAND })
    await expect(context.request('double', { n: 1n })).rejects.toMatchObject({ code: codes.SHOAL_ERR_NOT_SERIALIZABLE })
    await trackServer(server).drain({ shutdownTimeoutMs: 1000, idleSocketGraceMs: 0 })
  })

  it('rejects bad options by name before anything runs', async () => {
    await expect(runCluster({ workers: -1 })).rejects.toMatchObject({
      code: codes.SHOAL_ERR_INVALID_OPTION,
      message: expect.stringContaining('`workers`'),
    })
  })
})
