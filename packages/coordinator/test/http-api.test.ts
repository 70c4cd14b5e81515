/**
 * The HTTP adapter's own rules: who may do what (roles, the minimum number of approvals), verbs
 * that take no body, and a live event stream that never keeps the coordinator from shutting down.
 */
import { rmSync } from 'node:fs';
import { get, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorBodySchema, RolloutStatusSchema } from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

const { admin: ADMIN, operator: OPERATOR, approver: APPROVER, viewer: VIEWER } = TOKENS;

const PATCH = SAMPLE_PATCH_SPEC;

const running: TestCoordinator[] = [];

afterEach(async () => {
  for (const started of running.splice(0)) await started.close();
});

async function coordinator(config: Record<string, unknown> = {}): Promise<TestCoordinator> {
  const started = await startTestCoordinator(config);
  running.push(started);
  return started;
}

const call = callApi;

/** A patch and a rollout over one registered (offline) agent; returns the rollout id. */
async function rollout(app: FastifyInstance, request: Record<string, unknown> = {}): Promise<string> {
  await enrollAgent(app, ADMIN, 'web-1');
  const patch = (await call(app, 'POST', '/v1/patches', PATCH)).body as { id: string };
  const created = await call(app, 'POST', '/v1/rollouts', {
    patchId: patch.id,
    target: { all: true },
    offline: { mode: 'wait' },
    ...request,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return RolloutStatusSchema.parse(created.body).rollout.id;
}

describe('roles', () => {
  it('preflight needs write: it sends frames to agents and writes an audit row', async () => {
    const { app } = await coordinator();
    const id = await rollout(app);
    const viewer = await call(app, 'POST', `/v1/rollouts/${id}/preflight`, { timeoutSeconds: 1 }, VIEWER);
    expect(viewer.status).toBe(403);
    expect(ErrorBodySchema.parse(viewer.body).error.message).toBe('vic (viewer) may not write');
    const approver = await call(app, 'POST', `/v1/rollouts/${id}/preflight`, { timeoutSeconds: 1 }, APPROVER);
    expect(approver.status).toBe(403);
    expect((await call(app, 'POST', `/v1/rollouts/${id}/preflight`, { timeoutSeconds: 1 }, OPERATOR)).status).toBe(200);
  });
});

describe('minApprovals', () => {
  it('defaults to 1: a rollout asking for no approval is a 400 naming body.requiredApprovals, and nothing is stored', async () => {
    const { app } = await coordinator();
    await enrollAgent(app, ADMIN, 'web-1');
    const patch = (await call(app, 'POST', '/v1/patches', PATCH)).body as { id: string };
    const res = await call(
      app,
      'POST',
      '/v1/rollouts',
      { patchId: patch.id, target: { all: true }, requiredApprovals: 0 },
      OPERATOR,
    );
    expect(res.status).toBe(400);
    const { error } = ErrorBodySchema.parse(res.body);
    expect(error.code).toBe('validation_failed');
    expect(error.message).toContain('body.requiredApprovals');
    expect(error.details).toMatchObject({ issues: [{ path: 'body.requiredApprovals' }] });
    expect(((await call(app, 'GET', '/v1/rollouts')).body as { rollouts: unknown[] }).rollouts).toEqual([]);
  });

  it('a coordinator may ask for more, or allow none', async () => {
    const strict = await coordinator({ minApprovals: 2 });
    await enrollAgent(strict.app, ADMIN, 'web-1');
    const patch = (await call(strict.app, 'POST', '/v1/patches', PATCH)).body as { id: string };
    const one = await call(strict.app, 'POST', '/v1/rollouts', { patchId: patch.id, target: { all: true } });
    expect(one.status).toBe(400);

    const lax = await coordinator({ minApprovals: 0 });
    const id = await rollout(lax.app, { requiredApprovals: 0 });
    expect(
      ((await call(lax.app, 'GET', `/v1/rollouts/${id}`)).body as { rollout: { state: string } }).rollout.state,
    ).toBe('scheduled');
  });
});

describe('hostTimeoutSeconds', () => {
  it("shorter than the patch's health deadline plus one poll is a 400 naming it, and nothing is stored", async () => {
    const { app } = await coordinator();
    await enrollAgent(app, ADMIN, 'web-1');
    const health = { checks: [{ kind: 'tcp', host: '127.0.0.1', port: 8080 }], healthyDeadlineSeconds: 120 };
    const patch = (await call(app, 'POST', '/v1/patches', { ...PATCH, health })).body as { id: string };
    const res = await call(app, 'POST', '/v1/rollouts', {
      patchId: patch.id,
      target: { all: true },
      hostTimeoutSeconds: 60,
    });
    expect(res.status).toBe(400);
    const { error } = ErrorBodySchema.parse(res.body);
    expect(error.code).toBe('validation_failed');
    expect(error.message).toContain('body.hostTimeoutSeconds: must be at least 122 (got 60)');
    expect(error.details).toMatchObject({ issues: [{ path: 'body.hostTimeoutSeconds' }] });
    expect(((await call(app, 'GET', '/v1/rollouts')).body as { rollouts: unknown[] }).rollouts).toEqual([]);
  });
});

describe('host preconditions', () => {
  it("a malformed one is a 400 naming the field and why (dpkg's ambiguous >), and nothing is stored", async () => {
    const { app } = await coordinator();
    const change = {
      ...PATCH.change,
      requires: [{ file: '/etc/app/module.conf' }, { package: 'libfoo', version: '> 1.2' }],
    };
    const res = await call(app, 'POST', '/v1/patches', { ...PATCH, change });
    expect(res.status).toBe(400);
    const { error } = ErrorBodySchema.parse(res.body);
    expect(error.message).toBe(
      'invalid request: body.change.requires.1.version: ">" is refused: dpkg reads it as ">=", not as a strict comparison; write ">>" (strictly) or ">=" (or equal)',
    );
    expect(((await call(app, 'GET', '/v1/patches')).body as { patches: unknown[] }).patches).toEqual([]);

    const ok = await call(app, 'POST', '/v1/patches', {
      ...PATCH,
      change: { ...change, requires: [{ package: 'libfoo', version: '>= 1.2' }] },
    });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ change: { requires: [{ package: 'libfoo', version: '>= 1.2' }] } });
  });
});

describe('verbs without a body', () => {
  it('accept no body, an empty JSON body and null; malformed JSON is still a 400', async () => {
    const { app } = await coordinator({ minApprovals: 0 });
    const id = await rollout(app, { requiredApprovals: 0 });
    const auth = { authorization: `Bearer ${OPERATOR}` };

    const bare = await app.inject({ method: 'POST', url: `/v1/rollouts/${id}/start`, headers: auth });
    expect(bare.statusCode, bare.body).toBe(200);
    // What `curl -X POST -H 'content-type: application/json' …/pause` sends.
    const empty = await app.inject({
      method: 'POST',
      url: `/v1/rollouts/${id}/pause`,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '',
    });
    expect(empty.statusCode, empty.body).toBe(200);
    const nullBody = await app.inject({
      method: 'POST',
      url: `/v1/rollouts/${id}/resume`,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: 'null',
    });
    expect(nullBody.statusCode, nullBody.body).toBe(200);

    const malformed = await app.inject({
      method: 'POST',
      url: `/v1/rollouts/${id}/abort`,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"reason":',
    });
    expect(malformed.statusCode).toBe(400);
    expect(ErrorBodySchema.parse(malformed.json()).error.code).toBe('validation_failed');
    const poisoned = await app.inject({
      method: 'POST',
      url: `/v1/rollouts/${id}/abort`,
      headers: { ...auth, 'content-type': 'application/json' },
      payload: '{"__proto__":{"reason":"x"}}',
    });
    expect(poisoned.statusCode).toBe(400);
    expect(((await call(app, 'GET', `/v1/rollouts/${id}`)).body as { rollout: { state: string } }).rollout.state).toBe(
      'running',
    );
  });

  it('over a real socket too, as curl sends it (content type, no body)', async () => {
    const { app } = await coordinator({ minApprovals: 0 });
    const id = await rollout(app, { requiredApprovals: 0 });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: `/v1/rollouts/${id}/start`,
          headers: { authorization: `Bearer ${OPERATOR}`, 'content-type': 'application/json' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
  });
});

describe('GET /v1/rollouts/:id/events/stream', () => {
  it('streams, and app.close() resolves promptly while a client is still connected, logging no error', async () => {
    const { app, logLines, dataDir } = await coordinator();
    const id = await rollout(app);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;

    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      get(
        {
          host: '127.0.0.1',
          port,
          path: `/v1/rollouts/${id}/events/stream`,
          headers: { authorization: `Bearer ${ADMIN}` },
        },
        resolve,
      ).on('error', reject);
    });
    expect(response.statusCode).toBe(200);
    let received = '';
    const firstEvent = new Promise<void>((resolve) => {
      response.on('data', (chunk: Buffer) => {
        received += chunk.toString('utf8');
        if (received.includes('event: rollout.created')) resolve();
      });
    });
    const ended = new Promise<void>((resolve) => response.on('close', () => resolve()));
    await firstEvent;

    // Still connected: the close must end the stream rather than wait for the client.
    running.splice(
      running.findIndex((r) => r.app === app),
      1,
    );
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timed out'>((resolve) => {
      timer = setTimeout(() => resolve('timed out'), 15_000);
    });
    const outcome = await Promise.race([app.close().then(() => 'closed' as const), deadline]);
    clearTimeout(timer);
    expect(outcome).toBe('closed');
    await ended;
    expect(logLines.filter((l) => l.level >= 50)).toEqual([]);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('tells live readers a host’s phase as host.progress with no id, which a resume does not replay', async () => {
    const { app } = await coordinator();
    const id = await rollout(app);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const open = (lastEventId?: string) =>
      new Promise<IncomingMessage>((resolve, reject) => {
        get(
          {
            host: '127.0.0.1',
            port,
            path: `/v1/rollouts/${id}/events/stream`,
            headers: { authorization: `Bearer ${ADMIN}`, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
          },
          resolve,
        ).on('error', reject);
      });
    /** What the stream has sent once `until` is in it. */
    const readUntil = (response: IncomingMessage, until: string) =>
      new Promise<string>((resolve) => {
        let received = '';
        response.on('data', (chunk: Buffer) => {
          received += chunk.toString('utf8');
          if (received.includes(until)) resolve(received);
        });
      });
    const live = await open();
    const backlog = await readUntil(live, 'event: rollout.created');
    const lastId = /id: (\d+)/.exec(backlog)?.[1] as string;
    const notice = {
      type: 'host.progress' as const,
      rolloutId: id,
      hostId: 'web-1',
      state: 'applying',
      at: '2030-01-01T00:00:00.000Z',
    };
    const told = readUntil(live, 'event: host.progress');
    await app.fleet.store.transaction(async () => app.fleet.store.noteProgress(notice));
    expect(await told).toBe(`event: host.progress\ndata: ${JSON.stringify(notice)}\n\n`);
    live.destroy();

    // Not an audit event: a reader resuming after the last one gets nothing new, only the keep-alive silence.
    const resumed = await open(lastId);
    const next = readUntil(resumed, 'event: rollout.');
    await app.fleet.store.transaction(
      async () => await app.fleet.store.appendEvent({ rolloutId: id, actor: 'test', type: 'rollout.noted' }, notice.at),
    );
    expect(await next).not.toContain('host.progress');
    resumed.destroy();
  });

  it('with hostEvents=coalesced sends no host event or phase, but hosts.changed notices that count them', async () => {
    const { app } = await coordinator();
    const id = await rollout(app);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const open = (query: string, lastEventId?: string) =>
      new Promise<IncomingMessage>((resolve, reject) => {
        get(
          {
            host: '127.0.0.1',
            port,
            path: `/v1/rollouts/${id}/events/stream${query}`,
            headers: { authorization: `Bearer ${ADMIN}`, ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
          },
          resolve,
        ).on('error', reject);
      });
    /** What the stream has sent once `done` says it is enough. */
    const readUntil = (response: IncomingMessage, done: string | ((text: string) => boolean)) =>
      new Promise<string>((resolve) => {
        let received = '';
        response.on('data', (chunk: Buffer) => {
          received += chunk.toString('utf8');
          if (typeof done === 'string' ? received.includes(done) : done(received)) resolve(received);
        });
      });
    /** Until the rollout event and notices of `total` host changes are in. */
    const noticedAll = (total: number) => (text: string) =>
      text.includes('event: rollout.noted') && changesIn(text).reduce((a, b) => a + b, 0) >= total;
    /** The `changes` of every hosts.changed notice in what a stream sent. */
    const changesIn = (text: string) =>
      [...text.matchAll(/event: hosts\.changed\ndata: (.*)\n\n/g)].map((m) => {
        const notice = JSON.parse(m[1] as string) as { type: string; rolloutId: string; changes: number };
        expect(notice).toMatchObject({ type: 'hosts.changed', rolloutId: id });
        return notice.changes;
      });
    const { store } = app.fleet;
    const at = '2030-01-01T00:00:00.000Z';

    const coalesced = await open('?hostEvents=coalesced');
    const everything = await open('?hostEvents=all');
    const backlog = await readUntil(coalesced, 'event: rollout.created');
    await readUntil(everything, 'event: rollout.created');
    const lastId = /id: (\d+)/.exec(backlog)?.[1] as string;
    const coalescedSaw = readUntil(coalesced, noticedAll(4));
    const everythingSaw = readUntil(everything, 'event: rollout.noted');
    // Three host events and a host's phase in one burst, then a rollout event.
    await store.transaction(async () => {
      for (const n of [1, 2, 3])
        await store.appendEvent({ rolloutId: id, hostId: 'web-1', actor: 'test', type: 'host.noted', data: { n } }, at);
      store.noteProgress({ type: 'host.progress', rolloutId: id, hostId: 'web-1', state: 'applying', at });
    });
    await store.transaction(
      async () => await store.appendEvent({ rolloutId: id, actor: 'test', type: 'rollout.noted' }, at),
    );

    const all = await everythingSaw;
    expect(all.match(/event: host\.noted/g)).toHaveLength(3);
    expect(all).toContain('event: host.progress');
    expect(all).not.toContain('hosts.changed');
    // The first move at once, the rest of the burst at the interval's end: all four counted.
    const sent = await coalescedSaw;
    expect(changesIn(sent)[0]).toBe(1);
    expect(sent).not.toMatch(/event: host\.(noted|progress)/);
    expect(changesIn(sent).reduce((a, b) => a + b, 0)).toBe(4);
    expect(sent).toMatch(/id: \d+\nevent: rollout\.noted\n/);
    expect(sent).not.toMatch(/id: \d+\nevent: hosts\.changed/);
    coalesced.destroy();
    everything.destroy();

    // A resume replays the audit events after Last-Event-ID the same way: the host events as a count.
    const resumed = await open('?hostEvents=coalesced', lastId);
    const replayed = await readUntil(resumed, noticedAll(3));
    expect(replayed).not.toContain('event: host.noted');
    expect(changesIn(replayed)).toEqual([1, 2]);
    resumed.destroy();

    const refused = await open('?hostEvents=some');
    const body = await readUntil(refused, '}');
    expect(refused.statusCode).toBe(400);
    expect(body).toContain('hostEvents');
  });
});
