import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChangeRecordView, NewPatchInput, PatchHistory, PrometheusAnalysisInput } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { type CliResult, runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness, hostOf, sampleFilePatch } from './support/fleet-harness.js';
import { APP_CONF as CONF, errorRateComparison, type MetricHosts, startMetricHosts } from './support/metric-hosts.js';
import { prometheus } from './support/prometheus-server.js';
import { describeNeeding } from './support/requirements.js';

// From change request to production, with every process real: a coordinator with a promotion order
// (staging → prod, a soak of 0.5 min so the test waits seconds, not an hour, and a loaded runner
// still asks for prod before the soak is over), four agents (one in
// staging, three in prod), a real Prometheus scraping one metric service per host, and the CLI.
// The README's "From change request to production" shows this run's output (FLEETPATCH_SHOW_OUTPUT=1
// prints each CLI call as it ran).

const OLD = 'workers = 2\nerror_rate = 0\n';
const GOOD = 'workers = 8\nerror_rate = 0\n';
const BAD = 'workers = 8\nerror_rate = 0.5\n';
const STAGING = ['stg-1'];
const PROD = ['web-1', 'web-2', 'web-3'];
const HOSTS = [...STAGING, ...PROD];
const SOAK_MINUTES = 0.5;
const BOB_TOKEN = 'e2e-bob-approver-token-01';

const RECORD: NewPatchInput['record'] = {
  validation: [{ title: 'CI pipeline 4711: unit and integration suites', url: 'https://ci.example.com/app/4711' }],
  rollbackPlan: {
    steps: [
      'fleetpatch rollout revert <rollout> puts app.conf back on every host (snapshot taken at apply)',
      'check the 5xx rate on the dashboard is back to its level before the change',
    ],
  },
  risk: { level: 'medium', impact: 'the app restarts its workers; a bad value makes it answer 5xx' },
};

describeNeeding([prometheus], 'from change request to production', () => {
  let work: string;
  let fleet: FleetHarness;
  let metrics: MetricHosts;
  const rootOf = (host: string) => join(work, host, 'root');
  const confOf = (host: string) => readFile(join(rootOf(host), CONF), 'utf8');

  /** The CLI as the admin (or bob); printed when FLEETPATCH_SHOW_OUTPUT is set (for the README). */
  async function cli(args: string[], token = ADMIN_TOKEN): Promise<CliResult> {
    const result = await runCli(fleet.coordinator.url, args, { token });
    if (process.env.FLEETPATCH_SHOW_OUTPUT) {
      process.stdout.write(`\n$ fleetpatch ${args.join(' ')}\n${result.stdout}${result.stderr}[exit ${result.code}]\n`);
    }
    return result;
  }

  async function file(name: string, value: unknown): Promise<string> {
    const path = join(work, name);
    await writeFile(path, JSON.stringify(value, null, 2));
    return path;
  }

  const analysis = (overrides: Partial<PrometheusAnalysisInput> = {}) =>
    errorRateComparison(metrics.prom.url, { count: 3, ...overrides });

  /** Created by the admin and approved by bob (four eyes): ready to start. */
  async function createRollout(name: string, request: Record<string, unknown>): Promise<string> {
    const created = await cli(['rollout', 'create', '--file', await file(name, request)]);
    expect(created.code, created.stderr).toBe(0);
    const id = created.stdout.split('\n')[0] ?? '';
    const approved = await cli(['rollout', 'approve', id], BOB_TOKEN);
    expect(approved.code, approved.stderr).toBe(0);
    return id;
  }

  const quiet = () => metrics.quiet(OLD);

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-promotion-'));
    metrics = await startMetricHosts(work, HOSTS, OLD);
    fleet = await FleetHarness.start(join(work, 'coordinator'), {
      tickIntervalMs: 100,
      tokens: [{ name: 'bob', token: BOB_TOKEN, role: 'approver' }],
      extraConfig: {
        promotion: { label: 'env', order: ['staging', 'prod'], minSoakMinutes: SOAK_MINUTES },
        changeRecord: { required: ['validation', 'rollbackPlan', 'risk'] },
      },
    });
    const dirs = (host: string) => ({ dataDir: join(work, host, 'data'), rootDir: rootOf(host) });
    await fleet.spawnRegistered(STAGING, { env: 'staging', role: 'web' }, dirs);
    await fleet.spawnRegistered(PROD, { env: 'prod', role: 'web' }, dirs);
  }, 90_000);

  afterAll(async () => {
    await fleet?.stop();
    await metrics?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('staging first; prod refused before the soak and started after it; the canary rehearses its revert', async () => {
    await quiet();
    const created = await cli([
      'patch',
      'create',
      '--file',
      await file('patch.json', {
        ...sampleFilePatch(CONF, GOOD, { title: 'Eight app workers', ticket: 'CHG-1042' }),
        record: RECORD,
      }),
    ]);
    expect(created.code, created.stderr).toBe(0);
    const patchId = created.stdout.trim();
    const shown = await cli(['patch', 'show', patchId]);
    expect(shown.stdout).toContain(`CHANGE REQUEST ${patchId}: Eight app workers`);
    expect(shown.stdout).toContain(
      'VALIDATION\n- CI pipeline 4711: unit and integration suites <https://ci.example.com/app/4711>',
    );

    // Staging: the one staging host, gated on its own error rate.
    const staging = await createRollout('staging.json', {
      patchId,
      target: { labels: { env: 'staging' } },
      waves: ['100%'],
      // An inconclusive measurement (on a loaded runner the first one can come before Prometheus holds
      // two samples of the host in its 4 s window) counts as taken here (`ignore`) rather than pausing
      // staging: this test is about the promotion order; pausing on no data is analysis-gates.test.ts's.
      analyses: [analysis({ baselineQuery: undefined, condition: '< 0.05', count: 2, inconclusive: 'ignore' })],
    });
    expect((await cli(['rollout', 'start', staging])).code).toBe(0);
    expect((await fleet.waitForState(staging, ['succeeded', 'halted', 'paused'], 60_000)).rollout.state).toBe(
      'succeeded',
    );

    // Prod, at once: refused (409), naming the staging rollout and the minutes of soak left.
    const prod = await createRollout('prod.json', {
      patchId,
      target: { labels: { env: 'prod' } },
      waves: [1, '100%'],
      rehearseRevert: true,
      analyses: [analysis()],
    });
    const refused = await cli(['rollout', 'start', prod]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      new RegExp(
        `hosts in prod need staging passed first: rollout ${staging} succeeded on staging at \\S+ and is soaking: [0-9.]+ min left of 0\\.5 min`,
      ),
    );
    expect((await fleet.status(prod)).rollout.state).toBe('scheduled');
    for (const host of PROD) expect(await confOf(host)).toBe(OLD);

    // Once the soak is over (seconds here), the same start is accepted.
    await waitFor(
      'the soak to end',
      async () => (await fleet.api.raw('POST', `/v1/rollouts/${prod}/start`)).status === 200,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const done = await fleet.waitForState(prod, ['succeeded', 'halted', 'paused'], 90_000);
    expect(done.rollout.state).toBe('succeeded');
    expect(done.promotion?.requirements).toEqual([
      expect.objectContaining({
        env: 'prod',
        needs: 'staging',
        passedBy: expect.objectContaining({ rolloutId: staging }),
      }),
    ]);
    expect(hostOf(done, 'web-1').rehearsal?.ok).toBe(true);
    for (const host of HOSTS) expect(await confOf(host)).toBe(GOOD);

    const status = await cli(['rollout', 'status', prod]);
    expect(status.stdout).toContain(`promotion env: prod 3 hosts; prod needs staging: passed by ${staging}`);
    expect(status.stdout).toContain('web-1 rehearsed revert: passed (restored exactly, healthy again, applied again)');

    const history = await cli(['patch', 'history', patchId]);
    expect(history.code).toBe(0);
    const path = (await fleet.api.get<PatchHistory>(`/v1/patches/${patchId}/history`)).environments;
    expect(path.map((e) => [e.env, e.rollouts.map((r) => `${r.rolloutId}:${r.state}`)])).toEqual([
      ['staging', [`${staging}:succeeded`]],
      ['prod', [`${prod}:succeeded`]],
    ]);

    // The change record now links both rollouts as evidence and lists the analyses as rollback triggers.
    const record = await fleet.api.get<ChangeRecordView>(`/v1/patches/${patchId}/record`);
    expect(record.validatedBy.map((r) => r.rolloutId)).toEqual([staging, prod]);
    expect(record.rollbackTriggers.filter((t) => t.source === 'analysis').map((t) => t.rolloutId)).toEqual([
      staging,
      prod,
    ]);
    await cli(['patch', 'show', patchId]);
  }, 240_000);

  it('an admin override skips staging with a reason on the record, and the metric gate still catches a bad patch', async () => {
    await quiet();
    const patchId = await fleet.createPatch({
      ...sampleFilePatch(CONF, BAD, { title: 'Hotfix: app workers', ticket: 'CHG-1043' }),
      record: RECORD,
    });
    const prod = await createRollout('hotfix.json', {
      patchId,
      target: { labels: { env: 'prod' } },
      waves: [1, '100%'],
      analyses: [analysis()],
    });
    expect((await cli(['rollout', 'start', prod])).stderr).toContain('no rollout of this content on staging yet');
    const overridden = await cli([
      'rollout',
      'start',
      prod,
      '--override-promotion',
      'INC-77: outage fix, staging host down for maintenance',
    ]);
    expect(overridden.code, overridden.stderr).toBe(0);
    expect(overridden.stdout).toMatch(
      /promotion OVERRIDDEN by admin at \S+: "INC-77: outage fix, staging host down for maintenance"/,
    );

    const halted = await fleet.waitForState(prod, ['halted', 'succeeded', 'paused'], 60_000);
    expect(halted.rollout.state).toBe('halted');
    expect(halted.rollout.stateReason).toMatch(/^analysis error-rate failed on wave 1/);
    await waitFor('the canary reverted', async () => hostOf(await fleet.status(prod), 'web-1').state === 'reverted');
    for (const host of PROD) expect(await confOf(host)).toBe(OLD);
    const status = await cli(['rollout', 'status', prod]);
    expect(status.stdout).toContain('promotion OVERRIDDEN by admin');
    expect(status.stdout).toMatch(/analysis error-rate {2}failed/);
    const history = await cli(['patch', 'history', patchId]);
    expect(history.stdout).toMatch(/prod +ro_\S+ +pat_\S+ +halted +3 +\S+ +\S+ \(override\)/);
  }, 120_000);
});
