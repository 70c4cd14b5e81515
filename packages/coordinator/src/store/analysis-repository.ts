import type { AnalysisRunVerdict, MeasurementVerdict } from '@fleetpatch/shared';
import type { Db } from './database.js';

/** One analysis on one wave of one rollout: the counters of its current attempt. Times in ms since epoch. */
export interface AnalysisRunRecord {
  rolloutId: string;
  wave: number;
  name: string;
  attempt: number;
  startedAt: number;
  lastAt: number | null;
  taken: number;
  takenInBake: number;
  failed: number;
  inconclusive: number;
  verdict: AnalysisRunVerdict;
}

/** verify: some host of the wave has not finished; bake: every host has, and the wave bakes. */
export type MeasurementPhase = 'verify' | 'bake';

export interface MeasurementRecord {
  rolloutId: string;
  wave: number;
  name: string;
  attempt: number;
  at: string;
  phase: MeasurementPhase;
  /** null when there was no number to judge (inconclusive, skipped). */
  value: number | null;
  baseline: number | null;
  threshold: number | null;
  verdict: MeasurementVerdict;
  reason: string | null;
}

export interface RunRow {
  rollout_id: string;
  wave: number;
  name: string;
  attempt: number;
  started_at: number;
  last_at: number | null;
  taken: number;
  taken_in_bake: number;
  failed: number;
  inconclusive: number;
  verdict: string;
}

export interface MeasurementRow {
  rollout_id: string;
  wave: number;
  name: string;
  attempt: number;
  at: string;
  phase: string;
  value: number | null;
  baseline: number | null;
  threshold: number | null;
  verdict: string;
  reason: string | null;
}

export function toRun(row: RunRow): AnalysisRunRecord {
  return {
    rolloutId: row.rollout_id,
    wave: row.wave,
    name: row.name,
    attempt: row.attempt,
    startedAt: row.started_at,
    lastAt: row.last_at,
    taken: row.taken,
    takenInBake: row.taken_in_bake,
    failed: row.failed,
    inconclusive: row.inconclusive,
    verdict: row.verdict as AnalysisRunVerdict,
  };
}

export function toMeasurement(row: MeasurementRow): MeasurementRecord {
  return {
    rolloutId: row.rollout_id,
    wave: row.wave,
    name: row.name,
    attempt: row.attempt,
    at: row.at,
    phase: row.phase as MeasurementPhase,
    value: row.value,
    baseline: row.baseline,
    threshold: row.threshold,
    verdict: row.verdict as MeasurementVerdict,
    reason: row.reason,
  };
}

/** SQLite stores no NaN or infinity as a number: those are kept as null (the reason says what it was). */
export const finiteOrNull = (n: number | null) => (n !== null && Number.isFinite(n) ? n : null);

/** Metric analysis runs and their measurements (engine/analysis-runner.ts writes them). */
export class AnalysisRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      get: db.prepare('SELECT * FROM analysis_runs WHERE rollout_id = ? AND wave = ? AND name = ?'),
      forRollout: db.prepare('SELECT * FROM analysis_runs WHERE rollout_id = ? ORDER BY wave, name'),
      forWave: db.prepare('SELECT * FROM analysis_runs WHERE rollout_id = ? AND wave = ? ORDER BY name'),
      start: db.prepare(
        `INSERT INTO analysis_runs (rollout_id, wave, name, attempt, started_at, verdict)
         VALUES (?, ?, ?, 1, ?, 'running')`,
      ),
      restartFrom: db.prepare(
        `UPDATE analysis_runs SET attempt = attempt + 1, started_at = @now, last_at = NULL, taken = 0,
           taken_in_bake = 0, failed = 0, inconclusive = 0, verdict = 'running'
         WHERE rollout_id = @rolloutId AND wave >= @wave`,
      ),
      shiftRunning: db.prepare(
        `UPDATE analysis_runs SET started_at = started_at + @ms, last_at = last_at + @ms
         WHERE rollout_id = @rolloutId AND verdict = 'running'`,
      ),
      update: db.prepare(
        `UPDATE analysis_runs SET last_at = @lastAt, taken = @taken, taken_in_bake = @takenInBake,
           failed = @failed, inconclusive = @inconclusive, verdict = @verdict
         WHERE rollout_id = @rolloutId AND wave = @wave AND name = @name AND attempt = @attempt`,
      ),
      measure: db.prepare(
        `INSERT INTO analysis_measurements
           (rollout_id, wave, name, attempt, at, phase, value, baseline, threshold, verdict, reason)
         VALUES (@rolloutId, @wave, @name, @attempt, @at, @phase, @value, @baseline, @threshold, @verdict, @reason)`,
      ),
      latest: db.prepare(
        `SELECT * FROM (SELECT * FROM analysis_measurements
           WHERE rollout_id = ? AND wave = ? AND name = ? AND attempt = ? ORDER BY seq DESC LIMIT ?)
         ORDER BY seq`,
      ),
    };
  }

  async get(rolloutId: string, wave: number, name: string): Promise<AnalysisRunRecord | undefined> {
    const row = this.statements.get.get(rolloutId, wave, name) as RunRow | undefined;
    return row ? toRun(row) : undefined;
  }

  /** The run of `name` on `wave`, started now if there is none yet. */
  async getOrStart(rolloutId: string, wave: number, name: string, now: number): Promise<AnalysisRunRecord> {
    const existing = await this.get(rolloutId, wave, name);
    if (existing) return existing;
    this.statements.start.run(rolloutId, wave, name, now);
    return (await this.get(rolloutId, wave, name)) as AnalysisRunRecord;
  }

  async forRollout(rolloutId: string): Promise<AnalysisRunRecord[]> {
    return (this.statements.forRollout.all(rolloutId) as RunRow[]).map(toRun);
  }

  async forWave(rolloutId: string, wave: number): Promise<AnalysisRunRecord[]> {
    return (this.statements.forWave.all(rolloutId, wave) as RunRow[]).map(toRun);
  }

  /** A retry runs waves from `wave` on again: their analyses start a new attempt, from scratch. */
  async restartFrom(rolloutId: string, wave: number, now: number): Promise<void> {
    this.statements.restartFrom.run({ rolloutId, wave, now });
  }

  /**
   * The coordinator's wall clock was stepped by `ms`: the start and last measurement of the rollout's
   * analyses still running move with it, so that the next measurement stays an interval away.
   */
  async shiftRunning(rolloutId: string, ms: number): Promise<void> {
    this.statements.shiftRunning.run({ rolloutId, ms });
  }

  /** Writes the run's counters, unless another attempt has begun meanwhile (then returns false). */
  async update(run: AnalysisRunRecord): Promise<boolean> {
    return this.statements.update.run({ ...run }).changes === 1;
  }

  async addMeasurement(measurement: MeasurementRecord): Promise<void> {
    this.statements.measure.run({
      ...measurement,
      value: finiteOrNull(measurement.value),
      baseline: finiteOrNull(measurement.baseline),
      threshold: finiteOrNull(measurement.threshold),
    });
  }

  /** The last `limit` measurements of a run's attempt, oldest first. */
  async latest(
    run: Pick<AnalysisRunRecord, 'rolloutId' | 'wave' | 'name' | 'attempt'>,
    limit: number,
  ): Promise<MeasurementRecord[]> {
    return (this.statements.latest.all(run.rolloutId, run.wave, run.name, run.attempt, limit) as MeasurementRow[]).map(
      toMeasurement,
    );
  }
}
