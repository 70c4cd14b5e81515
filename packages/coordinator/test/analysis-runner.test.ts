import type { PrometheusAnalysisInput } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { MetricQuery, QueryAnswer } from '../src/analysis/prometheus-query.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// The analysis runner inside the real engine, store and clock-driven ticks, with Prometheus
// replaced by a script: each query is answered by the next entry of `answers` (the last repeating).
// test/analysis-gates.test.ts runs the same against a real Prometheus.

const value = (v: number): QueryAnswer => ({ ok: true, samples: [{ labels: {}, value: v }] });
const down: QueryAnswer = { ok: false, reason: 'query to http://127.0.0.1:9 failed: ECONNREFUSED' };

/** A scripted Prometheus; `queries` records what was asked, expanded. */
function scripted(answers: QueryAnswer[]): { query: MetricQuery; queries: string[] } {
  const queries: string[] = [];
  let next = 0;
  return {
    queries,
    query: async (_address, query) => {
      queries.push(query);
      return answers[Math.min(next++, answers.length - 1)] as QueryAnswer;
    },
  };
}

const analysis = (overrides: Partial<PrometheusAnalysisInput> = {}): PrometheusAnalysisInput => ({
  kind: 'prometheus',
  name: 'errors',
  address: 'http://127.0.0.1:9090',
  query: 'sum(rate(errors{$wave_hosts}[1m]))',
  condition: '< 0.01',
  intervalSeconds: 10,
  count: 2,
  ...overrides,
});

/** Starts a two-wave rollout over host-1 | host-2, host-3 whose canary finishes healthy at once. */
async function canaryDone(fleet: SimulatedFleet, overrides: Parameters<SimulatedFleet['launch']>[0] = {}) {
  await fleet.addHosts(hosts(3));
  const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 0, analyses: [analysis()], ...overrides });
  await fleet.finish('host-1');
  return id;
}

/** Ticks every `intervalSeconds` until `done` or `times` ticks. */
async function tickTimes(fleet: SimulatedFleet, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await fleet.advance(10 * SECOND);
}

describe('metric analyses in the engine', () => {
  it('holds the next wave until the analysis has its measurements, then lets it start', async () => {
    const script = scripted([value(0)]);
    const fleet = await SimulatedFleet.open({ metricQuery: script.query });
    const id = await canaryDone(fleet);
    await fleet.advance(0);
    // The canary is done and its (zero-second) bake is over, but nothing was measured yet.
    expect((await fleet.rollout(id)).currentWave).toBe(0);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 1, verdict: 'running' });
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 2, verdict: 'passed' });
    expect((await fleet.rollout(id)).currentWave).toBe(1);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect(script.queries[0]).toBe('sum(rate(errors{instance=~"host-1"}[1m]))');
  });

  it("keeps measuring an interval apart when the coordinator's wall clock is stepped back a day", async () => {
    const fleet = await SimulatedFleet.open({ metricQuery: scripted([value(0)]).query });
    const id = await canaryDone(fleet);
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 1, verdict: 'running' });

    fleet.clock.stepWall(-24 * 3600 * SECOND);
    await tickTimes(fleet, 1);

    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 2, verdict: 'passed' });
    expect((await fleet.rollout(id)).currentWave).toBe(1);
  });

  it('a failed measurement fails the wave: the canary is counted failed and reverted, the budget halts the rollout', async () => {
    const fleet = await SimulatedFleet.open({ metricQuery: scripted([value(0.5)]).query });
    const id = await canaryDone(fleet);
    await tickTimes(fleet, 1);
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toBe(
      'analysis errors failed on wave 1; failure budget exceeded: 1 failed, 0 tolerated',
    );
    expect(await fleet.run(id, 'host-1')).toMatchObject({
      state: 'reverting',
      countedFailure: true,
      errorCode: 'analysis_failed',
    });
    expect(fleet.sentOf('order.revert', 'host-1')).toHaveLength(1);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    const measured = (await fleet.events(id)).filter((e) => e.type === 'analysis.measured');
    expect(measured.map((e) => e.data)).toMatchObject([
      { wave: 0, analysis: 'errors', verdict: 'fail', value: 0.5, threshold: 0.01, phase: 'bake' },
    ]);
  });

  it('a failure budget that tolerates the wave lets the rollout go on (the budget decides, not the analysis)', async () => {
    const fleet = await SimulatedFleet.open({ metricQuery: scripted([value(0.5), value(0)]).query });
    const id = await canaryDone(fleet, { maxFailures: 1 });
    await tickTimes(fleet, 1);
    expect((await fleet.store.analyses.get(id, 0, 'errors'))?.verdict).toBe('failed');
    expect(await fleet.state(id)).toBe('running');
    // The wave waits for the canary's revert, then passes: one failure, one tolerated.
    expect((await fleet.rollout(id)).currentWave).toBe(0);
    await fleet.finishRevert('host-1');
    await fleet.advance(0);
    expect((await fleet.rollout(id)).currentWave).toBe(1);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
  });

  it('failureLimit tolerates that many failed measurements; inconclusive follows fail and ignore', async () => {
    const tolerant = await SimulatedFleet.open({ metricQuery: scripted([value(0.5), value(0), value(0.5)]).query });
    const a = await canaryDone(tolerant, { analyses: [analysis({ count: 3, failureLimit: 1 })] });
    await tickTimes(tolerant, 2);
    expect(await tolerant.store.analyses.get(a, 0, 'errors')).toMatchObject({ failed: 1, verdict: 'running' });
    await tickTimes(tolerant, 1);
    expect(await tolerant.store.analyses.get(a, 0, 'errors')).toMatchObject({ failed: 2, verdict: 'failed' });
    expect(await tolerant.state(a)).toBe('halted');

    const failing = await SimulatedFleet.open({ metricQuery: scripted([down]).query });
    const b = await canaryDone(failing, { analyses: [analysis({ inconclusive: 'fail' })] });
    await tickTimes(failing, 1);
    expect(await failing.state(b)).toBe('halted');
    expect((await failing.run(b, 'host-1')).reason).toMatch(/ECONNREFUSED/);

    const ignoring = await SimulatedFleet.open({ metricQuery: scripted([down]).query });
    const c = await canaryDone(ignoring, { analyses: [analysis({ inconclusive: 'ignore' })] });
    await tickTimes(ignoring, 2);
    expect(await ignoring.store.analyses.get(c, 0, 'errors')).toMatchObject({
      taken: 2,
      inconclusive: 2,
      verdict: 'passed',
    });
    expect((await ignoring.rollout(c)).currentWave).toBe(1);
  });

  it('pauses on an inconclusive measurement, measures again on resume, and survives a coordinator restart', async () => {
    const fleet = await SimulatedFleet.open({ metricQuery: scripted([value(0), down, value(0)]).query });
    const id = await canaryDone(fleet);
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 1 });
    await tickTimes(fleet, 1);
    expect(await fleet.state(id)).toBe('paused');
    expect((await fleet.rollout(id)).stateReason).toMatch(/^analysis inconclusive: errors: query to .* ECONNREFUSED/);
    // Paused: nothing is measured, however long it waits.
    await tickTimes(fleet, 3);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 1, inconclusive: 1 });

    await fleet.restart();
    // Its agents come back (until the canary's has, the restarted engine holds the wave's bake: ReconnectGrace).
    for (const host of hosts(3)) await fleet.connect(host);
    await fleet.engine.resume(id, 'alice');
    await fleet.engine.whenIdle();
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({
      taken: 2,
      inconclusive: 1,
      verdict: 'passed',
    });
    expect((await fleet.rollout(id)).currentWave).toBe(1);
  });

  it('compares with the unpatched hosts, and on the last wave, with none left, skips the comparison', async () => {
    const script = scripted([value(0.02), value(0.02)]);
    const fleet = await SimulatedFleet.open({ metricQuery: script.query });
    const id = await canaryDone(fleet, {
      analyses: [
        analysis({
          count: 1,
          condition: '<= 1.5 * baseline',
          baselineQuery: 'sum(rate(errors{$unpatched_hosts}[1m]))',
        }),
      ],
    });
    await tickTimes(fleet, 1);
    expect(script.queries).toEqual([
      'sum(rate(errors{instance=~"host-1"}[1m]))',
      'sum(rate(errors{instance=~"host-2|host-3"}[1m]))',
    ]);
    expect((await fleet.rollout(id)).currentWave).toBe(1);
    await fleet.finishAll(['host-2', 'host-3']);
    await tickTimes(fleet, 1);
    expect(await fleet.state(id)).toBe('succeeded');
    expect(script.queries).toHaveLength(2);
    expect(await fleet.store.analyses.latest({ rolloutId: id, wave: 1, name: 'errors', attempt: 1 }, 5)).toMatchObject([
      { verdict: 'skipped', reason: 'no unpatched host left to compare with' },
    ]);
  });
});

describe('a measurement of an interval recorded meanwhile', () => {
  it('is not counted: in a group, the rollout’s next driver measured and recorded the same interval', async () => {
    let fleet: SimulatedFleet | undefined;
    let id = '';
    let otherDriverRecorded = false;
    // While this coordinator's query is out, another member (the lease moved to it) records the interval.
    const query: MetricQuery = async () => {
      if (!otherDriverRecorded && fleet) {
        otherDriverRecorded = true;
        const { store } = fleet;
        const run = await store.analyses.get(id, 0, 'errors');
        if (!run) throw new Error('no analysis run');
        await store.transaction(async () => {
          await store.analyses.update({ ...run, lastAt: run.startedAt + 10 * SECOND, taken: run.taken + 1 });
        });
      }
      return value(0);
    };
    fleet = await SimulatedFleet.open({ metricQuery: query });
    id = await canaryDone(fleet);
    await tickTimes(fleet, 1);
    expect(otherDriverRecorded).toBe(true);
    // The other member's measurement counts; this one's, of the same interval, does not.
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 1, verdict: 'running' });
    expect((await fleet.events(id)).filter((e) => e.type === 'analysis.measured')).toHaveLength(0);
    // The next interval is measured as usual, and decides.
    await tickTimes(fleet, 1);
    expect(await fleet.store.analyses.get(id, 0, 'errors')).toMatchObject({ taken: 2, verdict: 'passed' });
  });
});
