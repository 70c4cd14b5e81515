import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, EventRecord, PrometheusAnalysisInput, RolloutStatus } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, errorBody, FleetHarness, hostOf, issuePaths, sampleFilePatch } from './support/fleet-harness.js';
import {
  APP_CONF as CONF,
  errorRate,
  errorRateComparison,
  type MetricHosts,
  startMetricHosts,
} from './support/metric-hosts.js';
import { type PrometheusServer, prometheus } from './support/prometheus-server.js';
import { describeNeeding } from './support/requirements.js';

// Metric gates against a real Prometheus: Debian's binary, started here on 127.0.0.1 with its own
// config and data, scraping one small metric service per host every second. Each service's 5xx
// share follows its host's config file, which the patches change; the coordinator queries
// Prometheus for the canary's error rate and compares it with the hosts not patched yet.

const OLD = 'workers = 2\nerror_rate = 0\n';
const GOOD = 'workers = 8\nerror_rate = 0\n';
const BAD = 'workers = 8\nerror_rate = 0.5\n';
const HOSTS = ['web-1', 'web-2', 'web-3'];

describeNeeding([prometheus], 'metric analysis gates against a real Prometheus', () => {
  let work: string;
  let fleet: FleetHarness;
  let metrics: MetricHosts;
  let prom: PrometheusServer;

  const rootOf = (host: string) => join(work, host, 'root');
  const confOf = (host: string) => readFile(join(rootOf(host), CONF), 'utf8');
  const journalOf = (host: string) => readdir(join(work, host, 'data', 'orders'));

  const comparison = (overrides: Partial<PrometheusAnalysisInput> = {}) => errorRateComparison(prom.url, overrides);

  async function events(id: string): Promise<EventRecord[]> {
    return (await fleet.api.get<EventPage>(`/v1/rollouts/${id}/events?limit=1000`)).events;
  }

  const quiet = () => metrics.quiet(OLD);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-analysis-'));
    metrics = await startMetricHosts(work, HOSTS, OLD);
    prom = metrics.prom;
    fleet = await FleetHarness.start(join(work, 'coordinator'), { tickIntervalMs: 100 });
    await fleet.spawnRegistered(HOSTS, { role: 'web' }, (host) => ({
      dataDir: join(work, host, 'data'),
      rootDir: rootOf(host),
    }));
  }, 90_000);

  afterAll(async () => {
    await fleet?.stop();
    await metrics?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('refuses a rollout whose analyses do not parse with a 400 naming each field; nothing is created', async () => {
    const patchId = await fleet.createPatch(sampleFilePatch(CONF, GOOD, { title: 'Never rolled out' }));
    const before = await fleet.api.get<{ rollouts: unknown[] }>('/v1/rollouts');
    const res = await fleet.api.raw('POST', '/v1/rollouts', {
      patchId,
      target: { all: true },
      requiredApprovals: 0,
      analyses: [
        comparison({ condition: '== 0' }),
        comparison({ name: 'second', query: 'up{$all_hosts}' }),
        comparison({ name: 'third', condition: '< 0.01' }),
      ],
    });
    expect(res.status).toBe(400);
    expect(issuePaths(await errorBody(res)).sort()).toEqual([
      'body.analyses.0.condition',
      'body.analyses.1.query',
      'body.analyses.2.condition',
    ]);
    expect((await fleet.api.get<{ rollouts: unknown[] }>('/v1/rollouts')).rollouts).toEqual(before.rollouts);
  });

  it('halts a patch that raises the canary’s 5xx rate at the canary, and reverts it; no other host is touched', async () => {
    await quiet();
    const patchId = await fleet.createPatch(sampleFilePatch(CONF, BAD));
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { role: 'web' } },
      waves: [1, '100%'],
      maxFailures: 0,
      // Three measurements a second apart: the canary's 5xx show within them even on a slow runner.
      analyses: [comparison({ count: 3 })],
    });
    const halted = await fleet.waitForState(id, ['halted', 'succeeded', 'paused']);
    expect(halted.rollout.state).toBe('halted');
    expect(halted.rollout.stateReason).toMatch(/^analysis error-rate failed on wave 1; failure budget exceeded/);
    // The canary goes back to its snapshot; the hosts of wave 2 never received an order.
    const reverted = await waitFor('the canary reverted', async () => {
      const status = await fleet.status(id);
      return hostOf(status, 'web-1').state === 'reverted' ? status : undefined;
    });
    expect(hostOf(reverted, 'web-1')).toMatchObject({ changed: false, errorCode: null });
    expect(await confOf('web-1')).toBe(OLD);
    for (const host of ['web-2', 'web-3']) {
      expect(hostOf(reverted, host).state).toBe('queued');
      expect(await confOf(host)).toBe(OLD);
      expect(await journalOf(host)).toEqual([]);
    }

    // The status shows the analysis failed, with the value seen and the threshold it was held to.
    const [run] = reverted.analyses;
    expect(run).toMatchObject({ wave: 0, name: 'error-rate', verdict: 'failed', failed: 1, failureLimit: 0 });
    const failed = run?.measurements.at(-1);
    expect(failed?.verdict).toBe('fail');
    expect(failed?.value).toBeGreaterThan(0.01);
    expect(failed?.baseline).toBe(0);
    expect(failed?.threshold).toBeCloseTo(0.01);

    // Every measurement is in the audit trail, with the query as sent to Prometheus.
    const trail = await events(id);
    const measured = trail.filter((e) => e.type === 'analysis.measured');
    expect(measured.length).toBe(run?.measurements.length);
    expect(measured.at(-1)?.data).toMatchObject({
      analysis: 'error-rate',
      wave: 0,
      verdict: 'fail',
      condition: '<= 1.5 * baseline + 0.01',
      query: errorRate('host=~"web-1"'),
      baselineQuery: errorRate('host=~"web-2|web-3"'),
    });
    expect(trail.find((e) => e.type === 'analysis.failed')?.data).toMatchObject({ analysis: 'error-rate', wave: 0 });
    expect(trail.find((e) => e.type === 'host.failed' && e.hostId === 'web-1')?.data).toMatchObject({
      errorCode: 'analysis_failed',
    });

    // The CLI's status view: the analysis under its wave, with its last value against the threshold.
    const cli = await runCli(fleet.coordinator.url, ['rollout', 'status', id], { token: ADMIN_TOKEN });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(
      /\n {2}analysis error-rate {2}failed {2}\d+\/3 taken, 1 failed \(limit 0\) {2}last [0-9.]+ \(threshold 0\.01, <= 1\.5 \* baseline \+ 0\.01\): fail\n/,
    );
  }, 90_000);

  it('lets a good patch through: each wave measured, the last with no unpatched host left to compare with', async () => {
    await quiet();
    const patchId = await fleet.createPatch(sampleFilePatch(CONF, GOOD));
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { role: 'web' } },
      waves: [1, '100%'],
      analyses: [comparison()],
    });
    const done = await fleet.waitForState(id, ['halted', 'succeeded', 'paused'], 60_000);
    expect(done.rollout.state).toBe('succeeded');
    for (const host of HOSTS) expect(await confOf(host)).toBe(GOOD);

    const [canary, rest] = done.analyses;
    expect(canary).toMatchObject({ wave: 0, verdict: 'passed', taken: 2, failed: 0 });
    expect(canary?.measurements.every((m) => m.verdict === 'pass' && m.value === 0 && m.baseline === 0)).toBe(true);
    expect(canary?.measurements.some((m) => m.phase === 'bake')).toBe(true);
    expect(rest).toMatchObject({ wave: 1, verdict: 'passed' });
    expect(rest?.measurements.at(-1)).toMatchObject({
      verdict: 'skipped',
      reason: 'no unpatched host left to compare with',
    });

    // Wave 2 started only after the canary's analysis passed.
    const trail = await events(id);
    const passedAt = trail.find((e) => e.type === 'analysis.passed' && e.data?.wave === 0)?.seq ?? Infinity;
    const wave2At = trail.find((e) => e.type === 'wave.started' && e.data?.wave === 1)?.seq ?? -1;
    expect(passedAt).toBeLessThan(wave2At);
  }, 90_000);

  it('pauses when Prometheus stops answering mid-rollout (policy pause); a resume measures again', async () => {
    await quiet();
    const patchId = await fleet.createPatch(sampleFilePatch(CONF, GOOD, { title: 'Good again' }));
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { role: 'web' } },
      waves: [1, '100%'],
      // A bake long enough that the canary's wave is still measured when Prometheus goes away.
      bakeSeconds: 600,
      analyses: [comparison({ name: 'canary-errors', count: 30 })],
    });
    await waitFor('a first measurement that passed', async () => {
      const status = await fleet.status(id);
      return status.analyses[0]?.measurements.some((m) => m.verdict === 'pass');
    });
    await prom.stop();
    const paused = await fleet.waitForState(id, ['paused', 'halted', 'succeeded']);
    expect(paused.rollout.state).toBe('paused');
    expect(paused.rollout.stateReason).toMatch(/^analysis inconclusive: canary-errors: .*failed/);
    const inconclusive = paused.analyses[0]?.measurements.at(-1);
    expect(inconclusive).toMatchObject({ verdict: 'inconclusive', value: null });
    expect(inconclusive?.reason).toMatch(/ECONNREFUSED/);
    // Wave 2 is untouched while paused.
    for (const host of ['web-2', 'web-3']) expect(hostOf(paused, host).state).toBe('queued');

    // Resumed with Prometheus still down: it measures again, and pauses again.
    const before = paused.analyses[0]?.inconclusive ?? 0;
    await fleet.api.post(`/v1/rollouts/${id}/resume`);
    const again = await waitFor('a second pause', async () => {
      const status = await fleet.status(id);
      return status.rollout.state === 'paused' && (status.analyses[0]?.inconclusive ?? 0) > before ? status : undefined;
    });
    expect(again.rollout.stateReason).toMatch(/^analysis inconclusive/);

    // Back up: the measurements go on from where they were, and the rollout is left for the operator.
    await prom.restart();
    await waitFor(
      'Prometheus scraping again',
      async () => (await prom.value('count(rate(http_requests_total{code="200"}[4s]) > 0)')) === HOSTS.length,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    // A Prometheus just restarted may still miss its first answers on a loaded runner (the 2 s
    // timeout, or a rate window not yet filled); the operator resumes again, as the pause asks.
    let lastSeen = '';
    await waitFor(
      'a measurement after the outage',
      async () => {
        const status: RolloutStatus = await fleet.status(id);
        const last = status.analyses[0]?.measurements.at(-1);
        lastSeen = `${status.rollout.state}: ${last?.verdict} ${last?.reason ?? ''}`;
        if (last !== undefined && last.verdict !== 'inconclusive') return true;
        if (status.rollout.state === 'paused') await fleet.api.post(`/v1/rollouts/${id}/resume`);
        return false;
      },
      { timeoutMs: 40_000, intervalMs: 250 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last seen ${lastSeen}`);
    });
    await fleet.api.post(`/v1/rollouts/${id}/abort`, { reason: 'end of test' });
  }, 120_000);
});
