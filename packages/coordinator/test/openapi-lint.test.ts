/**
 * The OpenAPI document as a linter and a client read it: Redocly's recommended rules find no error;
 * every operation is named, summed up, grouped, and says who may call it — and what it says is what
 * the coordinator enforces; verbs that take no body do not require one; the live stream is
 * text/event-stream; Swagger UI is served at /docs from the package.
 */
import { createConfig, lintFromString } from '@redocly/openapi-core';
import { describe, expect, it } from 'vitest';
import { closedAfterEach, TOKENS } from './support/test-coordinator.js';

const coordinator = closedAfterEach();

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  'x-required-role'?: string[];
  requestBody?: { required?: boolean };
  responses: Record<string, { content?: Record<string, unknown> }>;
}
interface Document {
  servers?: { url: string }[];
  paths: Record<string, Record<string, Operation>>;
}

async function documentOf(app: Awaited<ReturnType<typeof coordinator>>['app']): Promise<Document> {
  return (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as Document;
}

function operations(doc: Document): { method: string; path: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ method, path, op })),
  );
}

describe('the OpenAPI document', () => {
  it("passes Redocly's recommended rules with no error", async () => {
    const { app } = await coordinator();
    const doc = await documentOf(app);
    const config = await createConfig({ extends: ['recommended'] });
    const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: 'openapi.json', config });
    const describe = (p: (typeof problems)[number]) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`;
    expect(problems.filter((p) => p.severity === 'error').map(describe)).toEqual([]);
    // Warnings are not errors, but none today: a new one is worth a look.
    expect(problems.map(describe)).toEqual([]);
  });

  it('names, sums up, groups and secures every operation, with its roles in x-required-role and the description', async () => {
    const { app } = await coordinator();
    const doc = await documentOf(app);
    expect(doc.servers).toEqual([expect.objectContaining({ url: '/' })]);
    const all = operations(doc);
    expect(all.length).toBeGreaterThan(30);
    const ids = all.map(({ op }) => op.operationId);
    expect(new Set(ids).size).toBe(all.length);
    for (const { method, path, op } of all) {
      const where = `${method} ${path}`;
      expect(op.operationId, where).toMatch(/^[a-z][A-Za-z]+$/);
      expect(op.summary, where).toBeTruthy();
      expect(op.tags, where).toHaveLength(1);
      expect(op.security, where).toBeDefined();
      const roles = op['x-required-role'];
      expect(roles, where).toBeDefined();
      if (roles && roles.length > 0) {
        expect(op.security, where).toEqual([{ bearer: [] }]);
        expect(op.description, where).toContain(`role ${roles.join(' or ')}`);
      } else {
        expect(op.security, where).toEqual([]);
      }
    }
  });

  it('x-required-role is what the coordinator enforces: every other role is refused 403, these are not', async () => {
    const { app } = await coordinator();
    const doc = await documentOf(app);
    for (const { method, path, op } of operations(doc)) {
      const roles = op['x-required-role'] ?? [];
      if (roles.length === 0) continue;
      for (const [role, token] of Object.entries(TOKENS)) {
        const res = await app.inject({
          method: method.toUpperCase() as 'GET' | 'POST',
          url: path.replace(/\{[^}]+\}/g, 'nothing-here'),
          headers: { authorization: `Bearer ${token}` },
        });
        const refused = res.statusCode === 403;
        expect(refused, `${role} on ${method} ${path}: ${res.statusCode}`).toBe(!roles.includes(role));
      }
    }
  });

  it('verbs that take no body do not require one; bodies that are the request still are', async () => {
    const { app } = await coordinator();
    const doc = await documentOf(app);
    for (const verb of ['start', 'pause', 'resume', 'retry', 'promote', 'revert', 'submit', 'abort', 'approve']) {
      expect(doc.paths[`/v1/rollouts/{id}/${verb}`]?.post?.requestBody?.required, verb).toBe(false);
    }
    expect(doc.paths['/v1/rollouts/{id}/hosts/{hostId}/revert']?.post?.requestBody?.required).toBe(false);
    expect(doc.paths['/v1/rollouts/{id}/preflight']?.post?.requestBody?.required).toBe(false);
    expect(doc.paths['/v1/patches']?.post?.requestBody?.required).toBe(true);
    expect(doc.paths['/v1/rollouts']?.post?.requestBody?.required).toBe(true);
  });

  it('documents the live stream as text/event-stream, its errors as JSON', async () => {
    const { app } = await coordinator();
    const stream = (await documentOf(app)).paths['/v1/rollouts/{id}/events/stream']?.get;
    expect(Object.keys(stream?.responses['200']?.content ?? {})).toEqual(['text/event-stream']);
    expect(Object.keys(stream?.responses['4XX']?.content ?? {})).toEqual(['application/json']);
  });
});

describe('Swagger UI at /docs', () => {
  it('is served, public, from the package: no script or style from another origin', async () => {
    const { app } = await coordinator();
    const page = await app.inject({ method: 'GET', url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.body).toContain('swagger-ui');
    expect(page.body).not.toMatch(/(?:src|href)="(?:https?:)?\/\//);
    const initializer = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(initializer.statusCode).toBe(200);
    const bundle = await app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    expect(bundle.statusCode).toBe(200);
    expect(bundle.body.length).toBeGreaterThan(100_000);
    // The UI reads the same document.
    const json = await app.inject({ method: 'GET', url: '/docs/json' });
    expect(json.json()).toEqual((await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json());
  });
});
