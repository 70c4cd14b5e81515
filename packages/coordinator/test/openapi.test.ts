/**
 * The HTTP API as its OpenAPI document and its answers describe it: the document comes from the
 * routes' zod schemas, and every answer passes the same schemas on the way out.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AgentListSchema,
  ErrorBodySchema,
  EventPageSchema,
  JoinTokenCreatedSchema,
  JoinTokenListSchema,
  JoinTokenViewSchema,
  PatchListSchema,
  PatchSchema,
  PreflightResultSchema,
  RolloutListSchema,
  RolloutPlanSchema,
  RolloutStatusSchema,
} from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.js';
import { CoordinatorConfigSchema } from '../src/config.js';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

const ADMIN = 'admin-token-0123456789';
const APPROVER = 'approver-token-0123456789';

const PATCH = SAMPLE_PATCH_SPEC;

interface OpenApiOperation {
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
}
interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, OpenApiOperation>>;
}

let dataDir: string;
let app: FastifyInstance;

beforeEach(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'fleetpatch-openapi-'));
  const config = CoordinatorConfigSchema.parse({
    dataDir,
    apiTokens: [
      { name: 'alice', token: ADMIN, role: 'admin' },
      { name: 'bob', token: APPROVER, role: 'approver' },
    ],
  });
  app = await buildApp(config, { logger: pino({ level: 'silent' }) });
});

afterEach(async () => {
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
});

async function call(method: 'GET' | 'POST', url: string, body?: unknown, token = ADMIN) {
  const res = await app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return { status: res.statusCode, body: res.json() as unknown };
}

describe('GET /v1/openapi.json', () => {
  it('is an OpenAPI 3.1 document listing the main paths with their request and response schemas', async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as OpenApiDocument;
    expect(doc.openapi).toBe('3.1.0');

    const paths = Object.keys(doc.paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/healthz',
        '/v1/agents',
        '/v1/agents/{id}/revoke',
        '/v1/join-tokens',
        '/v1/enroll',
        '/v1/patches',
        '/v1/patches/{id}',
        '/v1/patches/{id}/summary',
        '/v1/rollouts',
        '/v1/rollouts/{id}',
        '/v1/rollouts/{id}/plan',
        '/v1/rollouts/{id}/preflight',
        '/v1/rollouts/{id}/approve',
        '/v1/rollouts/{id}/start',
        '/v1/rollouts/{id}/abort',
        '/v1/rollouts/{id}/revert',
        '/v1/rollouts/{id}/hosts/{hostId}/revert',
        '/v1/rollouts/{id}/events',
      ]),
    );
    expect(paths).not.toContain('/v1/openapi.json');

    const schemaOf = (path: string, method: string, status: string) =>
      doc.paths[path]?.[method]?.responses[status]?.content?.['application/json']?.schema;
    const requestOf = (path: string, method: string) =>
      doc.paths[path]?.[method]?.requestBody?.content['application/json']?.schema;

    // Requests: the shared request schemas, with their required fields.
    expect(requestOf('/v1/patches', 'post')).toMatchObject({
      type: 'object',
      required: expect.arrayContaining(['title', 'change']),
    });
    expect(requestOf('/v1/rollouts', 'post')).toMatchObject({
      type: 'object',
      required: expect.arrayContaining(['patchId', 'target']),
    });

    // Answers: the shared view schemas.
    expect(schemaOf('/v1/agents', 'get', '200')).toMatchObject({
      properties: { agents: { type: 'array', items: { required: expect.arrayContaining(['id', 'online']) } } },
    });
    expect(schemaOf('/v1/patches', 'post', '201')).toMatchObject({ required: expect.arrayContaining(['id']) });
    // The list answers summaries: a file by its content's sha256 and size, never the content.
    const listed = schemaOf('/v1/patches', 'get', '200') as {
      properties: { patches: { items: { properties: { change: { oneOf: { properties: object }[] } } } } };
    };
    const fileSummary = listed.properties.patches.items.properties.change.oneOf[0]?.properties;
    expect(fileSummary).toMatchObject({ contentSha256: expect.any(Object), contentBytes: expect.any(Object) });
    expect(fileSummary).not.toHaveProperty('content');
    expect(listed.properties.patches.items.properties).not.toHaveProperty('problem');
    // One patch's summary is the list's item: the dashboard names a patch without its content.
    expect(schemaOf('/v1/patches/{id}/summary', 'get', '200')).toEqual(listed.properties.patches.items);
    const status = schemaOf('/v1/rollouts/{id}', 'get', '200');
    expect(status).toMatchObject({
      type: 'object',
      additionalProperties: false,
      required: expect.arrayContaining(['rollout', 'waves', 'haltsOn']),
      properties: {
        rollout: { properties: { bakeUntil: { anyOf: expect.arrayContaining([{ type: 'null' }]) } } },
        waves: {
          items: { properties: { phase: { enum: ['pending', 'running', 'baking', 'passed', 'failed', 'stopped'] } } },
        },
      },
    });
    expect(schemaOf('/v1/rollouts', 'post', '201')).toEqual(status);
    expect(schemaOf('/v1/rollouts/{id}/plan', 'get', '200')).toMatchObject({
      required: expect.arrayContaining(['waves', 'waveSizes', 'frozen']),
    });
    expect(schemaOf('/v1/rollouts/{id}/events', 'get', '200')).toMatchObject({
      required: expect.arrayContaining(['events', 'next']),
    });

    // Errors: one body everywhere.
    expect(schemaOf('/v1/rollouts/{id}', 'get', '4XX')).toMatchObject({
      properties: { error: { required: expect.arrayContaining(['code', 'message']) } },
    });
  });
});

describe('answers pass the shared schemas', () => {
  it('agents, patches, rollouts, plan, verbs, preflight and events', async () => {
    const issued = await call('POST', '/v1/join-tokens', { labels: { role: 'web' }, uses: 2 });
    expect(issued.status).toBe(201);
    const joinTokenId = JoinTokenCreatedSchema.parse(issued.body).id;
    await enrollAgent(app, ADMIN, 'web-1', { role: 'web' });
    expect(JoinTokenListSchema.parse((await call('GET', '/v1/join-tokens')).body).joinTokens).toHaveLength(2);
    JoinTokenViewSchema.parse((await call('POST', `/v1/join-tokens/${joinTokenId}/revoke`)).body);

    const agents = await call('GET', '/v1/agents');
    expect(AgentListSchema.parse(agents.body).agents).toEqual([
      expect.objectContaining({
        id: 'web-1',
        online: false,
        facts: null,
        lastSeenAt: expect.any(String),
        removedAt: null,
      }),
    ]);

    const patch = await call('POST', '/v1/patches', PATCH);
    expect(patch.status).toBe(201);
    const patchId = PatchSchema.parse(patch.body).id;
    PatchSchema.parse((await call('GET', `/v1/patches/${patchId}`)).body);
    expect(PatchListSchema.parse((await call('GET', '/v1/patches')).body).patches).toHaveLength(1);

    const created = await call('POST', '/v1/rollouts', {
      patchId,
      target: { labels: { role: 'web' } },
      offline: { mode: 'skip' },
    });
    expect(created.status).toBe(201);
    const rolloutId = RolloutStatusSchema.parse(created.body).rollout.id;

    const plan = RolloutPlanSchema.parse((await call('GET', `/v1/rollouts/${rolloutId}/plan`)).body);
    expect(plan.waves.flatMap((w) => w.hosts)).toEqual(['web-1']);

    const preflight = await call('POST', `/v1/rollouts/${rolloutId}/preflight`, { timeoutSeconds: 1 });
    expect(PreflightResultSchema.parse(preflight.body)).toMatchObject({
      summary: { offline: 1 },
      results: [{ hostId: 'web-1', outcome: 'offline' }],
    });

    const approved = await call('POST', `/v1/rollouts/${rolloutId}/approve`, {}, APPROVER);
    expect(RolloutStatusSchema.parse(approved.body).rollout.state).toBe('scheduled');
    const started = await call('POST', `/v1/rollouts/${rolloutId}/start`, {});
    expect(started.status).toBe(200);
    const status = RolloutStatusSchema.parse(started.body);
    expect(status.waves[0]?.hosts[0]).toMatchObject({ hostId: 'web-1', online: false, health: null });

    const list = RolloutListSchema.parse((await call('GET', '/v1/rollouts')).body);
    expect(list.rollouts.map((r) => r.id)).toEqual([rolloutId]);

    const page = EventPageSchema.parse((await call('GET', `/v1/rollouts/${rolloutId}/events?limit=2`)).body);
    expect(page.events).toHaveLength(2);
    expect(page.next).toBe(page.events[1]?.seq);
  });

  it('refuses an invalid body with 400 and details.issues, and stores nothing', async () => {
    const res = await call('POST', '/v1/patches', { ...PATCH, title: '', change: { kind: 'file', path: 'etc/x' } });
    expect(res.status).toBe(400);
    const body = ErrorBodySchema.parse(res.body);
    expect(body.error.code).toBe('validation_failed');
    const issues = body.error.details?.issues as { path: string; message: string }[];
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['body.title', 'body.change.path']));
    expect(PatchListSchema.parse((await call('GET', '/v1/patches')).body).patches).toEqual([]);
  });

  it('answers an unknown rollout with a 404 error body', async () => {
    const res = await call('GET', '/v1/rollouts/ro_missing');
    expect(res.status).toBe(404);
    expect(ErrorBodySchema.parse(res.body).error.code).toBe('not_found');
  });
});
