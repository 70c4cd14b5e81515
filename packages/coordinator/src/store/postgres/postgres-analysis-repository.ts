import {
  type AnalysisRepository,
  type AnalysisRunRecord,
  finiteOrNull,
  type MeasurementRecord,
  type MeasurementRow,
  type RunRow,
  toMeasurement,
  toRun,
} from '../analysis-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

const RUN_COLUMNS =
  'rollout_id, wave, name, attempt, started_at, last_at, taken, taken_in_bake, failed, inconclusive, verdict';
const MEASUREMENT_COLUMNS = 'rollout_id, wave, name, attempt, at, phase, value, baseline, threshold, verdict, reason';

/** Metric analysis runs and their measurements on PostgreSQL (analysis-repository.ts is the reference). */
export class PostgresAnalysisRepository implements Public<AnalysisRepository> {
  constructor(private readonly executor: PostgresExecutor) {}

  async get(rolloutId: string, wave: number, name: string): Promise<AnalysisRunRecord | undefined> {
    const row = await this.executor.one<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM analysis_runs WHERE rollout_id = $1 AND wave = $2 AND name = $3`,
      [rolloutId, wave, name],
    );
    return row ? toRun(row) : undefined;
  }

  async getOrStart(rolloutId: string, wave: number, name: string, now: number): Promise<AnalysisRunRecord> {
    const existing = await this.get(rolloutId, wave, name);
    if (existing) return existing;
    // Another coordinator may start the same run between the read and this write: its run stands.
    await this.executor.query(
      `INSERT INTO analysis_runs (rollout_id, wave, name, attempt, started_at, verdict)
       VALUES ($1, $2, $3, 1, $4, 'running') ON CONFLICT DO NOTHING`,
      [rolloutId, wave, name, now],
    );
    return (await this.get(rolloutId, wave, name)) as AnalysisRunRecord;
  }

  async forRollout(rolloutId: string): Promise<AnalysisRunRecord[]> {
    const rows = await this.executor.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM analysis_runs WHERE rollout_id = $1 ORDER BY wave, name`,
      [rolloutId],
    );
    return rows.map(toRun);
  }

  async forWave(rolloutId: string, wave: number): Promise<AnalysisRunRecord[]> {
    const rows = await this.executor.query<RunRow>(
      `SELECT ${RUN_COLUMNS} FROM analysis_runs WHERE rollout_id = $1 AND wave = $2 ORDER BY name`,
      [rolloutId, wave],
    );
    return rows.map(toRun);
  }

  async restartFrom(rolloutId: string, wave: number, now: number): Promise<void> {
    await this.executor.query(
      `UPDATE analysis_runs SET attempt = attempt + 1, started_at = $3, last_at = NULL, taken = 0,
         taken_in_bake = 0, failed = 0, inconclusive = 0, verdict = 'running'
       WHERE rollout_id = $1 AND wave >= $2`,
      [rolloutId, wave, now],
    );
  }

  async shiftRunning(rolloutId: string, ms: number): Promise<void> {
    await this.executor.query(
      `UPDATE analysis_runs SET started_at = started_at + $2, last_at = last_at + $2
        WHERE rollout_id = $1 AND verdict = 'running'`,
      [rolloutId, ms],
    );
  }

  async update(run: AnalysisRunRecord): Promise<boolean> {
    const rows = await this.executor.query(
      `UPDATE analysis_runs SET last_at = $5, taken = $6, taken_in_bake = $7, failed = $8, inconclusive = $9,
         verdict = $10
       WHERE rollout_id = $1 AND wave = $2 AND name = $3 AND attempt = $4 RETURNING 1`,
      [
        run.rolloutId,
        run.wave,
        run.name,
        run.attempt,
        run.lastAt,
        run.taken,
        run.takenInBake,
        run.failed,
        run.inconclusive,
        run.verdict,
      ],
    );
    return rows.length === 1;
  }

  async addMeasurement(measurement: MeasurementRecord): Promise<void> {
    await this.executor.query(
      `INSERT INTO analysis_measurements (${MEASUREMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
      [
        measurement.rolloutId,
        measurement.wave,
        measurement.name,
        measurement.attempt,
        measurement.at,
        measurement.phase,
        finiteOrNull(measurement.value),
        finiteOrNull(measurement.baseline),
        finiteOrNull(measurement.threshold),
        measurement.verdict,
        measurement.reason,
      ],
    );
  }

  async latest(
    run: Pick<AnalysisRunRecord, 'rolloutId' | 'wave' | 'name' | 'attempt'>,
    limit: number,
  ): Promise<MeasurementRecord[]> {
    const rows = await this.executor.query<MeasurementRow>(
      `SELECT ${MEASUREMENT_COLUMNS} FROM (SELECT * FROM analysis_measurements
         WHERE rollout_id = $1 AND wave = $2 AND name = $3 AND attempt = $4 ORDER BY seq DESC LIMIT $5) AS last
       ORDER BY seq`,
      [run.rolloutId, run.wave, run.name, run.attempt, limit],
    );
    return rows.map(toMeasurement);
  }
}
