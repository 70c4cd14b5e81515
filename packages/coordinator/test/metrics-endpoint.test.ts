/**
 * GET /metrics: Prometheus' text format, fleetpatch_ names, bounded labels, an optional bearer token.
 * (test/metrics.test.ts scrapes a real coordinator during a real rollout.)
 */
import { describe, expect, it } from 'vitest';
import { CoordinatorMetrics } from '../src/metrics/coordinator-metrics.js';
import { closedAfterEach, TOKENS } from './support/test-coordinator.js';

const coordinator = closedAfterEach();

/** `name{labels} value` lines, comments left out. */
function samples(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('GET /metrics', () => {
  it('is public without a metrics token, in the text format, with build info, states at 0 and process defaults', async () => {
    const { app } = await coordinator();
    const res = await app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const lines = samples(res.body);
    expect(lines).toContainEqual(
      expect.stringMatching(/^fleetpatch_build_info\{version="0\.1\.0",node_version="v20\./),
    );
    expect(lines).toContain('fleetpatch_agents_connected 0');
    expect(lines).toContain('fleetpatch_rollouts{state="halted"} 0');
    expect(lines).toContain('fleetpatch_orders{state="verifying"} 0');
    expect(lines).toContainEqual(expect.stringMatching(/^process_cpu_user_seconds_total /));
    expect(lines).toContainEqual(expect.stringMatching(/^nodejs_eventloop_lag_seconds /));
    // Our own metrics are all fleetpatch_…; counters end in _total, durations in _seconds.
    const ours = [...res.body.matchAll(/^# TYPE (fleetpatch_\S+) (\S+)$/gm)].map(([, name, type]) => ({ name, type }));
    expect(ours.length).toBeGreaterThanOrEqual(12);
    for (const { name, type } of ours) {
      if (type === 'counter') expect(name).toMatch(/_total$/);
      if (type === 'histogram') expect(name).toMatch(/_seconds$/);
    }
  });

  it('counts the HTTP requests it answered and the SQLite transactions it ran', async () => {
    const { app } = await coordinator();
    await app.inject({
      method: 'POST',
      url: '/v1/join-tokens',
      headers: { authorization: `Bearer ${TOKENS.admin}` },
      payload: { labels: {} },
    });
    await app.inject({ method: 'GET', url: '/v1/nowhere/at/all' });
    const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(body).toMatch(/^fleetpatch_http_requests_total\{method="POST",route="\/v1\/join-tokens",status="201"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_http_requests_total\{method="GET",route="unmatched",status="404"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_sqlite_transaction_duration_seconds_count\{outcome="committed"\} [1-9]\d*$/m);
  });

  it('with a token configured: 401 without it (a security event), 200 with it; an API token is not it', async () => {
    const token = 'metrics-scraper-token-0001';
    const { app } = await coordinator({ metrics: { token } });
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    const withApiToken = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${TOKENS.admin}` },
    });
    expect(withApiToken.statusCode).toBe(401);
    const ok = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toMatch(/^fleetpatch_http_requests_total\{method="GET",route="\/metrics",status="401"\} 2$/m);
    const events = await app.inject({
      method: 'GET',
      url: '/v1/events',
      headers: { authorization: `Bearer ${TOKENS.admin}` },
    });
    expect(events.json()).toMatchObject({
      events: [{ type: 'security.api_refused', data: { status: 401, route: '/metrics' } }],
    });
  });

  it('refuses a configuration giving both token and tokenSha256', async () => {
    await expect(
      coordinator({ metrics: { token: 'metrics-scraper-token-0001', tokenSha256: 'a'.repeat(64) } }),
    ).rejects.toThrow(/token or tokenSha256/);
  });
});

describe('labels stay bounded whatever a peer sends', () => {
  it('an unknown close code, error code or ws error is folded into "other"', async () => {
    const metrics = new CoordinatorMetrics(
      { agentsConnected: () => 0, rolloutsByState: async () => new Map(), ordersByState: async () => new Map() },
      '0.0.0',
    );
    for (let code = 3000; code < 3100; code++) metrics.socketClosed(code);
    metrics.socketClosed(4401);
    metrics.socketError('WS_ERR_INVALID_UTF8');
    metrics.socketError('anything the peer wants');
    metrics.hostFailed('made_up_code');
    metrics.hostFailed('health_failed');
    metrics.requestAnswered('BREW', undefined, 418, 0.001);
    const body = await metrics.registry.metrics();
    expect(body).toMatch(/^fleetpatch_websocket_closes_total\{code="other"\} 100$/m);
    expect(body).toMatch(/^fleetpatch_websocket_closes_total\{code="4401"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_websocket_errors_total\{code="other"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_websocket_errors_total\{code="WS_ERR_INVALID_UTF8"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_host_failures_total\{code="other"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_host_failures_total\{code="health_failed"\} 1$/m);
    expect(body).toMatch(/^fleetpatch_http_requests_total\{method="other",route="unmatched",status="418"\} 1$/m);
  });
});
