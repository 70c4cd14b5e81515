/**
 * Refused API calls (401, 403) as security events in the audit trail — and the attack on that: a
 * flood of bad tokens from many addresses must not fill the database. The access log line of every
 * request carries the token's name and never the token.
 */
import { EventPageSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { API_REFUSED_EVENT } from '../src/http/refusal-audit.js';
import { callApi, closedAfterEach, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

const coordinator = closedAfterEach();

async function refusalEvents(app: TestCoordinator['app']) {
  const page = EventPageSchema.parse((await callApi(app, 'GET', '/v1/events?limit=1000')).body);
  return page.events.filter((event) => event.type === API_REFUSED_EVENT);
}

describe('refused calls are security events', () => {
  it('a 401 (unknown token) and a 403 (viewer writing) each leave one row: status, route pattern, address, token name', async () => {
    const { app } = await coordinator();
    const unknown = await app.inject({
      method: 'GET',
      url: '/v1/rollouts/ro_secret?x=1',
      remoteAddress: '203.0.113.9',
      headers: { authorization: 'Bearer a-guessed-token-000001' },
    });
    expect(unknown.statusCode).toBe(401);
    expect((await callApi(app, 'POST', '/v1/patches', {}, TOKENS.viewer)).status).toBe(403);

    const events = await refusalEvents(app);
    expect(events.map((e) => ({ actor: e.actor, data: e.data }))).toEqual([
      {
        actor: 'anonymous',
        data: {
          status: 401,
          method: 'GET',
          route: '/v1/rollouts/:id',
          remoteAddress: '203.0.113.9',
          suppressedBefore: 0,
        },
      },
      {
        actor: 'vic',
        data: { status: 403, method: 'POST', route: '/v1/patches', remoteAddress: '127.0.0.1', suppressedBefore: 0 },
      },
    ]);
    const stored = JSON.stringify(events);
    expect(stored).not.toContain('a-guessed-token-000001');
    expect(stored).not.toContain('ro_secret');
  });

  it('attack: 3000 bad tokens from 300 addresses write at most the budget, and the next row counts the rest', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const { app } = await coordinator(
      // Each address stays under the per-address 429 limit, so every request reaches the token check.
      { refusalAudit: { windowSeconds: 60, maxEventsPerWindow: 5 }, authFailures: { maxFailures: 100 } },
      { clock: { now: () => now } },
    );
    const requests = 3000;
    for (let i = 0; i < requests; i++) {
      const res = await app.inject({
        method: 'GET',
        url: '/v1/patches',
        remoteAddress: `198.51.100.${i % 300}`,
        headers: { authorization: `Bearer flood-${i}-0123456789` },
      });
      expect(res.statusCode).toBe(401);
    }
    const during = await refusalEvents(app);
    expect(during).toHaveLength(5);
    expect(during.every((e) => e.data?.suppressedBefore === 0)).toBe(true);

    now += 60_000; // the next window: one more refusal is written, with the count of what was held back
    await app.inject({ method: 'GET', url: '/v1/patches', remoteAddress: '192.0.2.1' });
    const after = await refusalEvents(app);
    expect(after).toHaveLength(6);
    expect(after[5]?.data).toMatchObject({ status: 401, remoteAddress: '192.0.2.1', suppressedBefore: requests - 5 });
  });

  it('one address hammering one route is one row per window', async () => {
    const { app } = await coordinator();
    for (let i = 0; i < 10; i++) await app.inject({ method: 'GET', url: '/v1/agents' });
    expect(await refusalEvents(app)).toHaveLength(1);
  });
});

describe('access log', () => {
  it('one line per request: method, route pattern, status, duration and token name, never the token', async () => {
    const { app, logLines } = await coordinator();
    await callApi(app, 'GET', '/v1/rollouts/ro_nothing', undefined, TOKENS.viewer);
    await app.inject({ method: 'GET', url: '/v1/agents', headers: { authorization: 'Bearer wrong-token-0123456789' } });
    const lines = logLines.filter((line) => line.msg === 'request');
    expect(lines).toEqual([
      expect.objectContaining({
        level: 30,
        method: 'GET',
        route: '/v1/rollouts/:id',
        status: 404,
        tokenName: 'vic',
        durationMs: expect.any(Number),
      }),
      expect.objectContaining({ method: 'GET', route: '/v1/agents', status: 401, tokenName: null }),
    ]);
    const everything = JSON.stringify(logLines);
    expect(everything).not.toContain(TOKENS.viewer);
    expect(everything).not.toContain('wrong-token-0123456789');
    expect(everything).not.toContain('ro_nothing');
  });
});
