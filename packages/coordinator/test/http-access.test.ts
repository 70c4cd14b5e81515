/**
 * Who may call what, decided before anything else: every route declares its access, the caller is
 * authenticated (401) and authorized (403) before the body is read, each refusal is logged once
 * without the token, and an address that keeps failing is answered 429 without its token hashed.
 */
import { ErrorBodySchema } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthFailureLimiter } from '../src/http/auth-failure-limiter.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

const running: TestCoordinator[] = [];
afterEach(async () => {
  for (const coordinator of running.splice(0)) await coordinator.close();
});

async function coordinator(...args: Parameters<typeof startTestCoordinator>): Promise<TestCoordinator> {
  const started = await startTestCoordinator(...args);
  running.push(started);
  return started;
}

const emptyBody = { headers: { 'content-type': 'application/json' }, payload: '{}' };

describe('authenticate first, then validate', () => {
  it('POST /v1/patches {} without a token is a 401 that lists no fields', async () => {
    const { app } = await coordinator();
    const res = await app.inject({ method: 'POST', url: '/v1/patches', ...emptyBody });
    expect(res.statusCode).toBe(401);
    const { error } = ErrorBodySchema.parse(res.json());
    expect(error).toEqual({ code: 'unauthorized', message: 'missing bearer token' });
  });

  it('an unknown token is a 401 too, and a viewer token is a 403 before the body is validated', async () => {
    const { app } = await coordinator();
    const unknown = await app.inject({
      method: 'POST',
      url: '/v1/patches',
      headers: { ...emptyBody.headers, authorization: 'Bearer not-a-known-token-at-all' },
      payload: '{}',
    });
    expect(unknown.statusCode).toBe(401);
    expect(ErrorBodySchema.parse(unknown.json()).error.code).toBe('unauthorized');
    const viewer = await app.inject({
      method: 'POST',
      url: '/v1/patches',
      headers: { ...emptyBody.headers, authorization: `Bearer ${TOKENS.viewer}` },
      payload: '{"not":"json',
    });
    expect(viewer.statusCode).toBe(403);
    expect(ErrorBodySchema.parse(viewer.json()).error).toEqual({
      code: 'forbidden',
      message: 'vic (viewer) may not write',
    });
  });

  it('logs each refusal once, with method, route pattern and token name, never the token', async () => {
    const { app, logLines } = await coordinator();
    await app.inject({
      method: 'GET',
      url: '/v1/rollouts/ro_1',
      headers: { authorization: 'Bearer secret-guess-0001' },
    });
    await app.inject({ method: 'POST', url: '/v1/patches', headers: { authorization: `Bearer ${TOKENS.viewer}` } });
    const refusals = logLines.filter((line) => line.msg.startsWith('API request refused'));
    expect(refusals).toEqual([
      expect.objectContaining({
        level: 40,
        msg: 'API request refused: unknown API token',
        method: 'GET',
        route: '/v1/rollouts/:id',
      }),
      expect.objectContaining({
        msg: 'API request refused: forbidden',
        method: 'POST',
        route: '/v1/patches',
        tokenName: 'vic',
        role: 'viewer',
      }),
    ]);
    const everything = JSON.stringify(logLines);
    expect(everything).not.toContain('secret-guess-0001');
    expect(everything).not.toContain(TOKENS.viewer);
  });
});

describe('every route declares its access', () => {
  it('every documented route refuses a caller without a token; only /healthz and the document are public', async () => {
    // Every probe here is a failed authentication from one address: lift the limit for this one.
    const { app } = await coordinator({ authFailures: { maxFailures: 1000 } });
    const doc = (await app.inject({ method: 'GET', url: '/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, unknown>>;
    };
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => ({ method: method.toUpperCase(), url: path.replace(/\{[^}]+\}/g, 'x') })),
    );
    expect(operations.length).toBeGreaterThan(15);
    for (const { method, url } of operations) {
      const res = await app.inject({ method: method as 'GET' | 'POST', url });
      expect(res.statusCode, `${method} ${url}`).toBe(url === '/healthz' ? 200 : 401);
    }
    expect((await app.inject({ method: 'GET', url: '/v1/openapi.json' })).statusCode).toBe(200);
  });

  it('a route that declares no access cannot be registered (fail closed)', async () => {
    const { app } = await coordinator();
    expect(() => app.get('/v1/undeclared', async () => 'secret')).toThrow(/declares no access/);
  });

  it('a self-authenticating route is reached without an API token', async () => {
    const { app } = await coordinator();
    app.post('/v1/self', { config: { access: 'self-authenticating' } }, async (request) => ({
      caller: request.caller,
    }));
    const res = await app.inject({ method: 'POST', url: '/v1/self' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ caller: null });
  });
});

describe('rate limiting of authentication failures', () => {
  it('after maxFailures from one address it answers 429 with Retry-After, even to a good token; other addresses are unaffected; the window ends', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const { app, logLines } = await coordinator(
      { authFailures: { maxFailures: 3, windowSeconds: 60 } },
      { clock: { now: () => now } },
    );
    const from = (remoteAddress: string, token: string) =>
      app.inject({ method: 'GET', url: '/v1/patches', remoteAddress, headers: { authorization: `Bearer ${token}` } });

    for (let i = 0; i < 3; i++) expect((await from('203.0.113.7', `guess-${i}-0123456789`)).statusCode).toBe(401);
    const limited = await from('203.0.113.7', 'guess-3-0123456789');
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('60');
    expect(ErrorBodySchema.parse(limited.json()).error.code).toBe('too_many_requests');
    expect((await from('203.0.113.7', TOKENS.viewer)).statusCode).toBe(429);
    expect((await from('198.51.100.2', TOKENS.viewer)).statusCode).toBe(200);
    expect(logLines.filter((line) => line.blocked === true)).toHaveLength(1);

    now += 60_000;
    expect((await from('203.0.113.7', TOKENS.viewer)).statusCode).toBe(200);
  });

  it('a 403 is not a failed authentication: the token was good', async () => {
    const { app } = await coordinator({ authFailures: { maxFailures: 1, windowSeconds: 60 } });
    for (let i = 0; i < 3; i++) {
      expect((await callApi(app, 'POST', '/v1/join-tokens', {}, TOKENS.viewer)).status).toBe(403);
    }
    expect((await callApi(app, 'GET', '/v1/agents', undefined, TOKENS.viewer)).status).toBe(200);
  });

  it('remembers a bounded number of addresses, forgetting the oldest first', () => {
    const limiter = new AuthFailureLimiter({ maxFailures: 2, windowSeconds: 60, trackedAddresses: 100 });
    limiter.recordFailure('10.0.0.1');
    limiter.recordFailure('10.0.0.1');
    expect(limiter.retryAfterSeconds('10.0.0.1')).toBe(60);
    for (let i = 0; i < 10_000; i++) limiter.recordFailure(`192.0.2.${i}`);
    expect(limiter.size).toBe(100);
    expect(limiter.retryAfterSeconds('10.0.0.1')).toBe(0);
  });
});
