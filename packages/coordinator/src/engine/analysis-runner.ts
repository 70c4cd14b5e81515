import {
  type Analysis,
  type AnalysisVariable,
  ErrorCode,
  expandQuery,
  hostMatcher,
  variablesOf,
  waveData,
} from '@fleetpatch/shared';
import { type Judgement, judgeMeasurement } from '../analysis/judge-measurement.js';
import type { MetricQuery } from '../analysis/prometheus-query.js';
import type { AnalysisRunRecord, MeasurementPhase } from '../store/analysis-repository.js';
import { OneAtATime } from '../store/one-at-a-time.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { EngineDeps } from './engine-interfaces.js';
import { transitionHostRun } from './host-run-transition.js';
import type { RevertRunner } from './revert-runner.js';
import { isSignedRollout } from './rollout-signing.js';
import { isoNow, mustGetRollout, SYSTEM, transitionRollout } from './rollout-transition.js';

type RunnerDeps = Pick<EngineDeps, 'store' | 'clock' | 'log' | 'windows' | 'markDirty' | 'isStopped' | 'drives'>;

/** Where a measurement was taken: the rollout, wave and attempt it belongs to, and the queries as sent. */
interface MeasurementKey {
  rolloutId: string;
  wave: number;
  name: string;
  attempt: number;
}

/** The reason a rollout paused for an inconclusive analysis starts with this. */
export const ANALYSIS_PAUSE_PREFIX = 'analysis inconclusive';

/**
 * Runs the metric analyses of running rollouts: on each tick, every analysis of the current wave
 * whose next measurement is due is queried (asynchronously, one query in flight per analysis), and
 * its answer is judged and recorded in one transaction with its audit row. Then:
 * - a failed measurement beyond `failureLimit` fails the analysis, and with it the wave: its healthy
 *   hosts are counted as failed (`analysis_failed`) and, unless autoRevert is `none`, reverted; the
 *   failure budget then decides whether the rollout halts (and the autoRevert scope what goes back);
 * - an inconclusive one follows `inconclusive`: `fail` counts it failed, `pause` pauses the rollout
 *   (a person resumes it), `ignore` counts it taken;
 * - `count` measurements within the limit, at least one of them during the bake, pass the analysis.
 * A wave passes its bake only once each of its analyses is decided (`analysesDecided`).
 * Everything lives in the store, so a restarted coordinator carries on where it was.
 */
export class AnalysisRunner {
  private readonly inFlight = new Set<string>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly deps: RunnerDeps,
    private readonly reverts: RevertRunner,
    private readonly query: MetricQuery,
    /** Counts a measurement in flight as work the engine has not finished (`RolloutEngine.whenIdle`). */
    private readonly track: (work: Promise<void>) => void = () => {},
    /** The engine's steps: a measurement is recorded as one of them, never in the middle of another. */
    private readonly steps: OneAtATime = new OneAtATime(),
  ) {}

  /** Starts every measurement that is due. Never throws: a failure is logged and retried on the next tick. */
  async tick(): Promise<void> {
    const { store, clock } = this.deps;
    if (this.deps.isStopped()) return;
    for (const rollout of await store.rollouts.inStates(['running'])) {
      const { analyses } = rollout.request;
      // In a coordinator group only the rollout's driver measures (one query per interval, not one per coordinator).
      if (analyses.length === 0 || rollout.hostCount === 0 || !this.deps.drives(rollout.id)) continue;
      for (const analysis of analyses) {
        try {
          const now = clock.now();
          // Read first: a write transaction on every tick of every rollout would be a waste.
          const run =
            (await store.analyses.get(rollout.id, rollout.currentWave, analysis.name)) ??
            (await store.transaction(
              async () => await store.analyses.getOrStart(rollout.id, rollout.currentWave, analysis.name, now),
            ));
          if (run.verdict !== 'running') continue;
          const due = (run.lastAt ?? run.startedAt) + analysis.intervalSeconds * 1000;
          const key = `${run.rolloutId}\u0000${run.wave}\u0000${run.name}`;
          if (now < due || this.inFlight.has(key)) continue;
          this.inFlight.add(key);
          // Outside the tick's step: the measurement outlives it and records as a step of its own.
          const measured = this.steps.outside(() => this.measure(rollout, analysis, run));
          this.track(measured.finally(() => this.inFlight.delete(key)));
        } catch (err) {
          this.deps.log.error({ err, rolloutId: rollout.id, analysis: analysis.name }, 'starting a measurement failed');
        }
      }
    }
  }

  /**
   * Must run inside the transaction that starts `wave`: its analyses start now, so the first
   * measurement is `intervalSeconds` after the wave's start, whenever the next tick comes.
   */
  async startWave(rollout: Pick<RolloutRecord, 'id' | 'request'>, wave: number): Promise<void> {
    const now = this.deps.clock.now();
    for (const analysis of rollout.request.analyses) {
      await this.deps.store.analyses.getOrStart(rollout.id, wave, analysis.name, now);
    }
  }

  /** Whether every analysis of the rollout's current wave has passed or failed (a wave waits for that). */
  async analysesDecided(rollout: RolloutRecord): Promise<boolean> {
    const { analyses } = rollout.request;
    if (analyses.length === 0) return true;
    const runs = new Map(
      (await this.deps.store.analyses.forWave(rollout.id, rollout.currentWave)).map((r) => [r.name, r]),
    );
    return analyses.every((a) => {
      const verdict = runs.get(a.name)?.verdict;
      return verdict === 'passed' || verdict === 'failed';
    });
  }

  /** The failed analysis of the rollout's current wave, if one failed. */
  async failedAnalysis(rollout: RolloutRecord): Promise<AnalysisRunRecord | undefined> {
    return (await this.deps.store.analyses.forWave(rollout.id, rollout.currentWave)).find(
      (r) => r.verdict === 'failed',
    );
  }

  /** Aborts measurements in flight; their answers are not recorded. */
  stop(): void {
    this.stopping.abort();
  }

  private async measure(rollout: RolloutRecord, analysis: Analysis, run: AnalysisRunRecord): Promise<void> {
    const key: MeasurementKey = { rolloutId: rollout.id, wave: run.wave, name: run.name, attempt: run.attempt };
    let judgement: Judgement;
    let queries: { query: string; baselineQuery?: string };
    try {
      const matchers = await this.matchers(rollout, analysis, run.wave);
      queries = {
        query: expandQuery(analysis.query, matchers.values),
        ...(analysis.baselineQuery ? { baselineQuery: expandQuery(analysis.baselineQuery, matchers.values) } : {}),
      };
      const usesUnpatched = [analysis.query, analysis.baselineQuery ?? ''].some((q) =>
        variablesOf(q).includes('unpatched_hosts'),
      );
      if (usesUnpatched && matchers.unpatchedCount === 0) {
        // The last wave: no host is left unpatched, so there is nothing to compare with.
        judgement = {
          verdict: 'skipped',
          value: null,
          baseline: null,
          threshold: null,
          reason: 'no unpatched host left to compare with',
        };
      } else {
        const timeoutMs = analysis.timeoutSeconds * 1000;
        const signal = this.stopping.signal;
        const [answer, baseline] = await Promise.all([
          this.query(analysis.address, queries.query, timeoutMs, signal),
          queries.baselineQuery === undefined
            ? Promise.resolve(undefined)
            : this.query(analysis.address, queries.baselineQuery, timeoutMs, signal),
        ]);
        judgement = judgeMeasurement(analysis, answer, baseline);
      }
    } catch (err) {
      this.deps.log.error({ err, ...key }, 'measurement failed');
      return;
    }
    if (this.deps.isStopped() || this.stopping.signal.aborted) return;
    try {
      await this.steps.run(() => this.record(key, analysis, judgement, queries, run.lastAt));
    } catch (err) {
      this.deps.log.error({ err, ...key }, 'recording a measurement failed; it is taken again on a later tick');
    }
  }

  /** The label matchers the query variables expand to, for the wave `wave` of the rollout. */
  private async matchers(
    rollout: RolloutRecord,
    analysis: Analysis,
    wave: number,
  ): Promise<{ values: Record<AnalysisVariable, string>; unpatchedCount: number }> {
    const { store } = this.deps;
    const from = analysis.hostLabelFrom;
    const labels = from === undefined ? null : new Map((await store.agents.list()).map((a) => [a.id, a.labels]));
    const labelOf = (hostId: string) =>
      labels === null || from === undefined ? hostId : (labels.get(hostId)?.[from] ?? hostId);
    const runs = await store.hostRuns.forRollout(rollout.id);
    const waveHosts = runs.filter((r) => r.wave === wave).map((r) => labelOf(r.hostId));
    const unpatched = runs.filter((r) => r.wave > wave && !r.changed).map((r) => labelOf(r.hostId));
    return {
      values: {
        wave_hosts: hostMatcher(analysis.hostLabel, waveHosts),
        unpatched_hosts: hostMatcher(analysis.hostLabel, unpatched),
      },
      unpatchedCount: unpatched.length,
    };
  }

  /**
   * One transaction: the measurement, its audit row, the run's counters, and what the verdict sets off.
   * `dueFrom`: the run's `lastAt` when this measurement was started, the interval it measures.
   */
  private async record(
    key: MeasurementKey,
    analysis: Analysis,
    judgement: Judgement,
    queries: { query: string; baselineQuery?: string },
    dueFrom: number | null,
  ): Promise<void> {
    const { store, clock } = this.deps;
    await store.transaction(async () => {
      const rollout = await mustGetRollout(store, key.rolloutId);
      const run = await store.analyses.get(key.rolloutId, key.wave, key.name);
      // Taken for a wave or an attempt that is over, or while the rollout stopped: not counted.
      if (
        rollout.state !== 'running' ||
        rollout.currentWave !== key.wave ||
        run === undefined ||
        run.attempt !== key.attempt ||
        run.verdict !== 'running'
      ) {
        return;
      }
      // The interval was measured and recorded meanwhile: in a group, by the rollout's next driver, when
      // the lease moved while this (stalled) one measured. Counted once, not twice.
      if (run.lastAt !== dueFrom) {
        this.deps.log.info({ ...key }, 'measurement not counted: its interval was recorded meanwhile');
        return;
      }
      const phase: MeasurementPhase = rollout.bakeUntil === null ? 'verify' : 'bake';
      const at = isoNow(clock);
      await store.analyses.addMeasurement({ ...key, at, phase, ...judgement });
      const next: AnalysisRunRecord = { ...run, lastAt: clock.now() };
      const counted = countOf(judgement.verdict, analysis.inconclusive);
      if (judgement.verdict === 'inconclusive') next.inconclusive++;
      if (counted === 'failed') next.failed++;
      if (counted === 'taken' || counted === 'failed') {
        next.taken++;
        if (phase === 'bake') next.takenInBake++;
      }
      // Nothing to compare with (the last wave): the analysis has nothing more to say about it.
      if (judgement.verdict === 'skipped') next.verdict = 'passed';
      else if (next.failed > analysis.failureLimit) next.verdict = 'failed';
      else if (next.taken >= analysis.count && next.takenInBake > 0) next.verdict = 'passed';
      await store.analyses.update(next);
      await store.appendEvent(
        {
          rolloutId: key.rolloutId,
          actor: SYSTEM,
          type: 'analysis.measured',
          data: {
            ...waveData(key.wave),
            analysis: key.name,
            attempt: key.attempt,
            phase,
            condition: analysis.condition,
            ...judgement,
            // JSON has no infinity: say it in words (null is what the number becomes).
            ...(judgement.value !== null && !Number.isFinite(judgement.value)
              ? { valueText: judgement.value > 0 ? '+Inf' : '-Inf' }
              : {}),
            query: queries.query,
            ...(queries.baselineQuery ? { baselineQuery: queries.baselineQuery } : {}),
            taken: next.taken,
            failed: next.failed,
          },
        },
        at,
      );
      if (next.verdict !== 'running') {
        await store.appendEvent(
          {
            rolloutId: key.rolloutId,
            actor: SYSTEM,
            type: `analysis.${next.verdict}`,
            data: {
              ...waveData(key.wave),
              analysis: key.name,
              attempt: key.attempt,
              taken: next.taken,
              failed: next.failed,
              failureLimit: analysis.failureLimit,
              ...(judgement.reason ? { reason: judgement.reason } : {}),
            },
          },
          at,
        );
      }
      if (next.verdict === 'failed') await this.failWave(rollout, analysis, judgement);
      else if (judgement.verdict === 'inconclusive' && analysis.inconclusive === 'pause') {
        await transitionRollout(
          this.deps,
          rollout,
          'paused',
          SYSTEM,
          `${ANALYSIS_PAUSE_PREFIX}: ${analysis.name}: ${judgement.reason ?? 'no value'} (resume to measure again)`,
        );
      }
    });
    this.deps.markDirty(key.rolloutId);
  }

  /**
   * Must run inside a transaction. The analysis judged the wave's hosts together, so every host of
   * the wave that carries the change is counted failed; unless autoRevert is `none`, it goes back to
   * its snapshot as a host whose health failed would. A signed rollout's host waits for a signed
   * revert statement (the coordinator cannot sign one): the halt says so.
   */
  private async failWave(rollout: RolloutRecord, analysis: Analysis, judgement: Judgement): Promise<void> {
    const { store, clock } = this.deps;
    const signed = await isSignedRollout(store, rollout.id);
    const reason = `analysis ${analysis.name} failed: ${judgement.reason ?? 'over its failure limit'}`;
    for (const run of await store.hostRuns.forWave(rollout.id, rollout.currentWave)) {
      if (run.state !== 'healthy' || !run.changed) continue;
      await transitionHostRun(
        this.deps,
        run,
        {
          to: 'failed',
          changed: true,
          countedFailure: true,
          finishedAt: clock.now(),
          errorCode: ErrorCode.analysisFailed,
          reason,
        },
        { actor: SYSTEM, data: { errorCode: ErrorCode.analysisFailed, reason, analysis: analysis.name } },
      );
      if (rollout.request.autoRevert !== 'none' && !signed) await this.reverts.dispatch({ ...run, state: 'failed' });
    }
  }
}

/** How a measurement counts: failed, taken (toward `count`), or not at all (the rollout pauses). */
function countOf(verdict: Judgement['verdict'], policy: Analysis['inconclusive']): 'failed' | 'taken' | 'none' {
  switch (verdict) {
    case 'pass':
    case 'skipped':
      return 'taken';
    case 'fail':
      return 'failed';
    case 'inconclusive':
      return policy === 'fail' ? 'failed' : policy === 'ignore' ? 'taken' : 'none';
  }
}
