/**
 * Input that can never be right is refused with a 400 naming the field, and nothing is stored;
 * every other refusal — unknown route, over-long id, wrong media type — comes in the one
 * `{ error: { code, message, details } }` shape.
 */
import { ErrorBodySchema, type PatchSpecInput } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator;
let patchId: string;
beforeAll(async () => {
  coordinator = await startTestCoordinator();
  await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
  patchId = ((await callApi(coordinator.app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string }).id;
});
afterAll(async () => coordinator.close());

const FILE = SAMPLE_PATCH_SPEC.change as Extract<PatchSpecInput['change'], { kind: 'file' }>;

async function count(what: 'patches' | 'rollouts'): Promise<number> {
  return ((await callApi(coordinator.app, 'GET', `/v1/${what}`)).body as Record<string, unknown[]>)[what]?.length ?? -1;
}

/** Sends `payload` as raw JSON text and expects a 400 naming `path`, with nothing stored. */
async function expectRefused(url: '/v1/patches' | '/v1/rollouts', payload: string, path: string, message?: RegExp) {
  const what = url === '/v1/patches' ? 'patches' : 'rollouts';
  const before = await count(what);
  const res = await coordinator.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'application/json' },
    payload,
  });
  expect(res.statusCode, res.body).toBe(400);
  const { error } = ErrorBodySchema.parse(res.json());
  expect(error.code).toBe('validation_failed');
  const issues = (error.details as { issues: { path: string; message: string }[] }).issues;
  expect(issues.map((issue) => issue.path)).toContain(path);
  if (message) expect(issues.find((issue) => issue.path === path)?.message).toMatch(message);
  expect(await count(what)).toBe(before);
}

const patchWith = (change: Record<string, unknown>, rest: Record<string, unknown> = {}) =>
  JSON.stringify({ ...SAMPLE_PATCH_SPEC, change: { ...FILE, ...change }, ...rest });
const rolloutWith = (request: Record<string, unknown>) =>
  JSON.stringify({ patchId, target: { all: true }, ...request });

describe('patches that can never be right', () => {
  it.each([
    ['setuid, setgid and sticky bits', { mode: '7777' }, 'body.change.mode', /allowSpecialModes/],
    ['a setuid bit', { mode: '4755' }, 'body.change.mode', /setuid/],
    ['base64 that is garbage', { encoding: 'base64', content: '!!!!!!' }, 'body.change.content', /canonical base64/],
    ['base64 without padding', { encoding: 'base64', content: 'aGk' }, 'body.change.content', /canonical/],
    ['base64 with whitespace', { encoding: 'base64', content: 'aGk=\n' }, 'body.change.content', /canonical/],
    ['a newline in a path', { path: '/etc/app\n/app.conf' }, 'body.change.path', /control characters/],
    ['a NUL in a path', { path: '/etc/app\u0000.conf' }, 'body.change.path', /NUL character/],
    ['a C1 control in a path', { path: '/etc/app\u0085.conf' }, 'body.change.path', /control characters/],
  ])('%s', async (_name, change, path, message) => {
    await expectRefused('/v1/patches', patchWith(change), path, message);
  });

  it('special mode bits are accepted when the patch says allowSpecialModes: true', async () => {
    const res = await callApi(coordinator.app, 'POST', '/v1/patches', {
      ...SAMPLE_PATCH_SPEC,
      change: { ...FILE, mode: '4755', allowSpecialModes: true },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  });

  it.each([
    [
      'minHealthySeconds not below healthyDeadlineSeconds',
      { minHealthySeconds: 120, healthyDeadlineSeconds: 60 },
      'body.health.minHealthySeconds',
    ],
    [
      'intervalSeconds above healthyDeadlineSeconds',
      { intervalSeconds: 30, healthyDeadlineSeconds: 10 },
      'body.health.intervalSeconds',
    ],
    [
      'an expectStatus range with min > max',
      { checks: [{ kind: 'http', url: 'http://127.0.0.1/health', expectStatus: { min: 500, max: 200 } }] },
      'body.health.checks.0.expectStatus.min',
    ],
  ])('a health policy with %s', async (_name, health, path) => {
    await expectRefused('/v1/patches', patchWith({}, { health }), path);
  });
});

describe('rollouts that can never be right', () => {
  it.each([
    ['a failure budget over 100%', { maxFailures: '101%' }, 'body.maxFailures'],
    ['a per-wave failure budget over 100%', { maxFailuresPerWave: '100.5%' }, 'body.maxFailuresPerWave'],
    ['a wave over 100%', { waves: ['150%'] }, 'body.waves.0'],
  ])('%s', async (_name, request, path) => {
    await expectRefused('/v1/rollouts', rolloutWith(request), path, /at most 100%/);
  });
});

describe('bodies JSON.parse accepts but the coordinator must not keep', () => {
  it('a lone surrogate in a title is refused, and GET /v1/patches and /v1/events stay well-formed', async () => {
    await expectRefused('/v1/patches', patchWith({}, { title: 'x\ud800y' }), 'body.title', /well-formed Unicode/);
    // As escaped JSON text too: what `curl -d '{"title":"x\ud800y"}'` sends.
    await expectRefused(
      '/v1/patches',
      patchWith({}, { title: 'PLACEHOLDER' }).replace('PLACEHOLDER', 'x\\ud800y'),
      'body.title',
    );
    for (const url of ['/v1/patches', '/v1/events']) {
      const res = await coordinator.app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${TOKENS.admin}` },
      });
      expect(res.statusCode).toBe(200);
      expect(res.body.isWellFormed()).toBe(true);
      expect(res.body).not.toMatch(/\\ud[89ab]/i);
    }
  });

  it("a NUL in a title or in a file's utf8 content is refused (PostgreSQL cannot keep it); as base64 it is taken", async () => {
    await expectRefused('/v1/patches', patchWith({}, { title: 'x\u0000y' }), 'body.title', /NUL character/);
    await expectRefused('/v1/patches', patchWith({ content: 'a\u0000b' }), 'body.change.content', /encoding base64/);
    await expectRefused(
      '/v1/patches',
      patchWith({ 'k\u0000': 1 }),
      'body.change.k\\u0000',
      /is a key that holds a NUL/,
    );
    const res = await callApi(coordinator.app, 'POST', '/v1/patches', {
      ...SAMPLE_PATCH_SPEC,
      change: { ...FILE, encoding: 'base64', content: Buffer.from('a\u0000b').toString('base64') },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
  });

  it('a NUL in the URL (a path id, a query value) is refused 400 naming the url, before anything reads it', async () => {
    for (const url of ['/v1/rollouts/ro_%00x', '/v1/packages?source=open%00ssl', '/v1/agents/web%00-1']) {
      const res = await coordinator.app.inject({
        method: 'GET',
        url,
        headers: { authorization: `Bearer ${TOKENS.admin}` },
      });
      expect(res.statusCode, url).toBe(400);
      const { error } = ErrorBodySchema.parse(res.json());
      expect(error.code).toBe('validation_failed');
      expect((error.details as { issues: { path: string }[] }).issues.map((issue) => issue.path)).toEqual(['url']);
    }
  });

  it('a lone surrogate in a key, deep in the body, is refused too', async () => {
    await expectRefused('/v1/patches', patchWith({ 'k\udc00': 1 }), 'body.change.k\ufffd', /key/);
  });

  it('__proto__ is refused as a key, by name, not as invalid JSON', async () => {
    await expectRefused(
      '/v1/patches',
      patchWith({}).replace('{', '{"__proto__":{"x":1},'),
      'body.__proto__',
      /__proto__/,
    );
  });

  it('constructor.prototype is refused', async () => {
    await expectRefused(
      '/v1/patches',
      patchWith({ constructor: { prototype: {} } }),
      'body.change.constructor.prototype',
    );
  });

  it('nesting deeper than 64 levels is refused without walking it', async () => {
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const payload = patchWith({}, { title: 'PLACEHOLDER' }).replace('"PLACEHOLDER"', deep);
    await expectRefused('/v1/patches', payload, `body.title${'.0'.repeat(63)}`, /deeper than 64/);
  });

  it('malformed JSON is a 400 that says so', async () => {
    const res = await coordinator.app.inject({
      method: 'POST',
      url: '/v1/patches',
      headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'application/json' },
      payload: '{"title":',
    });
    expect(res.statusCode).toBe(400);
    expect(ErrorBodySchema.parse(res.json()).error.message).toMatch(/not valid JSON/);
  });
});

describe('one error shape for everything', () => {
  it.each([
    ['an unknown route', 'GET', '/v1/nope', 404, 'not_found'],
    ['an unknown method on a known path', 'POST', '/v1/events', 404, 'not_found'],
    // Over the router's maxParamLength (100): refused before any route or schema sees it.
    ['a 200-character id', 'GET', `/v1/rollouts/${'a'.repeat(200)}`, 414, 'validation_failed'],
    ['an id the route schema refuses', 'GET', '/v1/agents/-not-a-host', 400, 'validation_failed'],
  ] as const)('%s', async (_name, method, url, status, code) => {
    const res = await coordinator.app.inject({ method, url, headers: { authorization: `Bearer ${TOKENS.admin}` } });
    expect(res.statusCode).toBe(status);
    expect(ErrorBodySchema.parse(res.json()).error.code).toBe(code);
  });

  it('a body in a media type no route reads is a 415', async () => {
    const res = await coordinator.app.inject({
      method: 'POST',
      url: '/v1/patches',
      headers: { authorization: `Bearer ${TOKENS.admin}`, 'content-type': 'text/plain' },
      payload: 'hello',
    });
    expect(res.statusCode).toBe(415);
    expect(ErrorBodySchema.parse(res.json()).error.code).toBe('unsupported_media_type');
  });
});
