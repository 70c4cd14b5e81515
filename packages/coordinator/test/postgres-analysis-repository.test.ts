/**
 * PostgresAnalysisRepository against AnalysisRepository (SQLite, the reference): runs started,
 * updated, restarted by a retry and refused when stale, and measurements read back as the last N of
 * an attempt, give the same answers on both stores — non-finite numbers kept as null by both.
 */
import { expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AnalysisRepository, type MeasurementRecord } from '../src/store/analysis-repository.js';
import { PostgresAnalysisRepository } from '../src/store/postgres/postgres-analysis-repository.js';
import { useStoreTwins } from './support/store-twins.js';

describeNeeding(postgresCluster, 'PostgresAnalysisRepository', () => {
  const { same } = useStoreTwins(async (twins) => {
    await twins.seed.rollout('r1');
    return {
      sqlite: new AnalysisRepository(twins.sqlite),
      postgres: new PostgresAnalysisRepository(twins.postgres) as unknown as AnalysisRepository,
    };
  });

  it('keeps runs and their attempts as the SQLite store does', async () => {
    const t0 = 1_764_860_400_123;
    expect(await same((r) => r.get('r1', 0, 'error-rate'))).toBeUndefined();
    const started = await same((r) => r.getOrStart('r1', 0, 'error-rate', t0));
    expect(started).toMatchObject({ attempt: 1, verdict: 'running', lastAt: null, startedAt: t0 });
    // Started once: a second getOrStart finds it, whatever its clock says.
    await same((r) => r.getOrStart('r1', 0, 'error-rate', t0 + 5));
    await same((r) => r.getOrStart('r1', 0, 'latency', t0 + 1));
    await same((r) => r.getOrStart('r1', 1, 'error-rate', t0 + 2));
    await same((r) => r.getOrStart('r1', 2, 'apdex', t0 + 3));

    const updated = {
      ...started,
      lastAt: t0 + 60_000,
      taken: 3,
      takenInBake: 1,
      failed: 1,
      inconclusive: 1,
      verdict: 'failed' as const,
    };
    expect(await same((r) => r.update(updated))).toBe(true);
    expect(await same((r) => r.update({ ...updated, wave: 9 }))).toBe(false);
    await same((r) => r.forRollout('r1'));
    await same((r) => r.forWave('r1', 0));
    await same((r) => r.forWave('r1', 5));

    await same((r) => r.restartFrom('r1', 1, t0 + 120_000));
    const runs = await same((r) => r.forRollout('r1'));
    expect(runs.map((run) => [run.wave, run.name, run.attempt])).toEqual([
      [0, 'error-rate', 1],
      [0, 'latency', 1],
      [1, 'error-rate', 2],
      [2, 'apdex', 2],
    ]);
    // Counters of an attempt that a retry replaced are not written.
    expect(await same((r) => r.update({ ...updated, wave: 1, attempt: 1 }))).toBe(false);
    expect(await same((r) => r.update({ ...updated, wave: 1, attempt: 2 }))).toBe(true);
    await same((r) => r.get('r1', 1, 'error-rate'));
  });

  it('keeps measurements as the SQLite store does, the last N of an attempt oldest first', async () => {
    const measurement = (i: number, over: Partial<MeasurementRecord> = {}): MeasurementRecord => ({
      rolloutId: 'r1',
      wave: 0,
      name: 'error-rate',
      attempt: 1,
      at: `2026-12-04T15:${String(i).padStart(2, '0')}:00.${String(i * 13).padStart(3, '0')}Z`,
      phase: i % 2 === 0 ? 'verify' : 'bake',
      value: i / 3,
      baseline: 0.1,
      threshold: 1e-9,
      verdict: 'pass',
      reason: null,
      ...over,
    });
    for (let i = 0; i < 6; i++) await same((r) => r.addMeasurement(measurement(i)));
    await same((r) =>
      r.addMeasurement(
        measurement(6, {
          value: Number.NaN,
          baseline: Number.POSITIVE_INFINITY,
          threshold: null,
          verdict: 'inconclusive',
          reason: 'NaN',
        }),
      ),
    );
    await same((r) => r.addMeasurement(measurement(7, { attempt: 2, value: -1.5e300 })));
    await same((r) => r.addMeasurement(measurement(8, { name: 'latency' })));
    const last = await same((r) => r.latest({ rolloutId: 'r1', wave: 0, name: 'error-rate', attempt: 1 }, 3));
    expect(last.map((m) => m.at.slice(14, 16))).toEqual(['04', '05', '06']);
    expect(last[2]).toMatchObject({ value: null, baseline: null, threshold: null, reason: 'NaN' });
    await same((r) => r.latest({ rolloutId: 'r1', wave: 0, name: 'error-rate', attempt: 1 }, 100));
    await same((r) => r.latest({ rolloutId: 'r1', wave: 0, name: 'error-rate', attempt: 2 }, 5));
    expect(await same((r) => r.latest({ rolloutId: 'r1', wave: 3, name: 'error-rate', attempt: 1 }, 5))).toEqual([]);
  });
});
