import type { HostRunState } from '@fleetpatch/shared';
import {
  type HostRunPageFilter,
  type HostRunRecord,
  type HostRunRepository,
  type HostRunRow,
  type HostRunWrite,
  type QueuedDispatch,
  type QueuedHostRun,
  toRecord,
} from '../host-run-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/**
 * Every column but `rowid` (which only orders), read back in the shape SQLite gives them — flags as
 * 0/1, JSON as text — so that one mapping makes records of both.
 */
const COLUMNS = `rollout_id, host_id, wave, position, state, order_id, revert_order_id, changed::integer AS changed,
  counted_failure::integer AS counted_failure, answered::integer AS answered, dispatched_at, delivered_at, finished_at, error_code,
  reason, health::text AS health, rehearsal::text AS rehearsal, after_change::text AS after_change,
  packages::text AS packages`;

/** Hosts queued by one INSERT at a start: a statement's parameters stay ~0.5 MB at most. */
const QUEUED_ROWS_PER_STATEMENT = 10_000;

/** A JSON column's parameter: null stays SQL NULL (not the jsonb `null`). */
const jsonOrNull = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value));

/**
 * One row per host per rollout, on PostgreSQL (host-run-repository.ts is the reference, query for
 * query). States are compared as text but sorted COLLATE "C" where SQLite's index order showed
 * through (counts by state, the rows SQLite returned in index order), so both stores list them alike
 * whatever the database's locale.
 */
export class PostgresHostRunRepository implements Public<HostRunRepository> {
  constructor(private readonly executor: PostgresExecutor) {}

  /**
   * A statement per QUEUED_ROWS_PER_STATEMENT hosts, not a round trip per host: a start of 10,000
   * hosts was 10,000 INSERTs one after the other, each waiting for the database (~5 s at 0.5 ms a round trip).
   * Inserted in the order given (`ORDER BY` the ordinality), as SQLite inserts them.
   */
  async insertQueued(rolloutId: string, runs: readonly QueuedHostRun[]): Promise<void> {
    for (let first = 0; first < runs.length; first += QUEUED_ROWS_PER_STATEMENT) {
      const slice = runs.slice(first, first + QUEUED_ROWS_PER_STATEMENT);
      await this.executor.query(
        `INSERT INTO host_runs (rollout_id, host_id, wave, position, state)
         SELECT $1, host_id, wave, position, 'queued'
         FROM unnest($2::text[], $3::integer[], $4::integer[]) WITH ORDINALITY AS planned(host_id, wave, position, n)
         ORDER BY n`,
        [rolloutId, slice.map((run) => run.hostId), slice.map((run) => run.wave), slice.map((run) => run.position)],
      );
    }
  }

  async forRollout(rolloutId: string): Promise<HostRunRecord[]> {
    return await this.rows('WHERE rollout_id = $1 ORDER BY wave, position', [rolloutId]);
  }

  async forWave(rolloutId: string, wave: number): Promise<HostRunRecord[]> {
    return await this.rows('WHERE rollout_id = $1 AND wave = $2 ORDER BY position', [rolloutId, wave]);
  }

  async get(rolloutId: string, hostId: string): Promise<HostRunRecord | undefined> {
    return (await this.rows('WHERE rollout_id = $1 AND host_id = $2', [rolloutId, hostId]))[0];
  }

  async byOrderId(orderId: string): Promise<HostRunRecord | undefined> {
    return (await this.rows('WHERE order_id = $1', [orderId]))[0];
  }

  async byRevertOrderId(orderId: string): Promise<HostRunRecord | undefined> {
    return (await this.rows('WHERE revert_order_id = $1', [orderId]))[0];
  }

  async countInWave(
    rolloutId: string,
    wave: number,
    states: readonly HostRunState[],
  ): Promise<Map<HostRunState, number>> {
    const rows = await this.executor.query<{ state: HostRunState; n: number }>(
      `SELECT state, count(*) AS n FROM host_runs WHERE rollout_id = $1 AND wave = $2 AND state = ANY($3::text[])
        GROUP BY state ORDER BY state COLLATE "C"`,
      [rolloutId, wave, states],
    );
    return new Map(rows.map((row) => [row.state, row.n]));
  }

  async anyQueued(rolloutId: string, wave: number): Promise<boolean> {
    const rows = await this.executor.query<{ found: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM host_runs WHERE rollout_id = $1 AND wave = $2 AND state = 'queued') AS found",
      [rolloutId, wave],
    );
    return rows[0]?.found === true;
  }

  async countByWaveAndState(rolloutId: string): Promise<{ wave: number; state: HostRunState; n: number }[]> {
    return await this.executor.query<{ wave: number; state: HostRunState; n: number }>(
      `SELECT wave, state, count(*) AS n FROM host_runs WHERE rollout_id = $1
        GROUP BY wave, state ORDER BY wave, state COLLATE "C"`,
      [rolloutId],
    );
  }

  async firstFailures(rolloutId: string, limit: number): Promise<HostRunRecord[]> {
    return await this.rows('WHERE rollout_id = $1 AND counted_failure ORDER BY wave, position LIMIT $2', [
      rolloutId,
      limit,
    ]);
  }

  async page(rolloutId: string, filter: HostRunPageFilter): Promise<HostRunRecord[]> {
    return await this.rows(
      `WHERE rollout_id = $1 AND ($2::text IS NULL OR state = $2) AND ($3::integer IS NULL OR wave = $3)
         AND (wave, position) > ($4::integer, $5::integer)
       ORDER BY wave, position LIMIT $6`,
      [
        rolloutId,
        filter.state ?? null,
        filter.wave ?? null,
        filter.after?.wave ?? -1,
        filter.after?.position ?? -1,
        filter.limit,
      ],
    );
  }

  async countInStates(rolloutId: string, states: readonly HostRunState[]): Promise<Map<HostRunState, number>> {
    const rows = await this.executor.query<{ state: HostRunState; n: number }>(
      `SELECT state, count(*) AS n FROM host_runs WHERE state = ANY($1::text[]) AND rollout_id = $2
        GROUP BY state ORDER BY state COLLATE "C"`,
      [states, rolloutId],
    );
    return new Map(rows.map((row) => [row.state, row.n]));
  }

  async nextQueued(rolloutId: string, wave: number, limit: number): Promise<HostRunRecord[]> {
    return await this.inWaveAndState(rolloutId, wave, 'queued', limit);
  }

  async inWaveAndState(rolloutId: string, wave: number, state: HostRunState, limit: number): Promise<HostRunRecord[]> {
    return await this.rows('WHERE rollout_id = $1 AND wave = $2 AND state = $3 ORDER BY position LIMIT $4', [
      rolloutId,
      wave,
      state,
      limit,
    ]);
  }

  async inStates(rolloutId: string, states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    return await this.rows('WHERE rollout_id = $1 AND state = ANY($2::text[]) ORDER BY wave, position', [
      rolloutId,
      states,
    ]);
  }

  async inStatesEverywhere(states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    // SQLite leaves the order unsaid and answers in its state index's: state, dispatch time, rowid.
    return await this.rows(
      `WHERE state = ANY($1::text[]) AND dispatched_at IS NOT NULL
       ORDER BY state COLLATE "C", dispatched_at, rowid`,
      [states],
    );
  }

  async revertCandidates(rolloutId: string, limit: number): Promise<HostRunRecord[]> {
    return await this.rows(
      `WHERE rollout_id = $1 AND changed
         AND state IN ('healthy', 'failed', 'timed_out', 'cancelled', 'skipped', 'reverted', 'revert_failed')
         AND (state != 'revert_failed' OR revert_order_id IS NULL)
       ORDER BY wave, position LIMIT $2`,
      [rolloutId, limit],
    );
  }

  async recentForHost(hostId: string, limit: number): Promise<HostRunRecord[]> {
    return await this.rows('WHERE host_id = $1 ORDER BY rowid DESC LIMIT $2', [hostId, limit]);
  }

  async forHostInStates(hostId: string, states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    // As SQLite answers through its (host_id, state) index: by state, then the order written.
    return await this.rows(
      `WHERE host_id = $1 AND state = ANY($2::text[]) AND rollout_id IN (SELECT id FROM rollouts)
       ORDER BY state COLLATE "C", rowid`,
      [hostId, states],
    );
  }

  async failures(rolloutId: string, wave?: number): Promise<number> {
    const row = await this.executor.one<{ n: number }>(
      `SELECT count(*) AS n FROM host_runs
        WHERE rollout_id = $1 AND ($2::integer IS NULL OR wave = $2) AND counted_failure`,
      [rolloutId, wave ?? null],
    );
    return row?.n ?? 0;
  }

  async markAnswered(rolloutId: string, hostId: string): Promise<void> {
    await this.executor.query('UPDATE host_runs SET answered = true WHERE rollout_id = $1 AND host_id = $2', [
      rolloutId,
      hostId,
    ]);
  }

  async forgetRevertOrder(rolloutId: string, hostId: string): Promise<void> {
    await this.executor.query('UPDATE host_runs SET revert_order_id = NULL WHERE rollout_id = $1 AND host_id = $2', [
      rolloutId,
      hostId,
    ]);
  }

  async dispatchQueued(rolloutId: string, at: number, dispatches: readonly QueuedDispatch[]): Promise<string[]> {
    if (dispatches.length === 0) return [];
    const rows = await this.executor.query<{ host_id: string }>(
      `UPDATE host_runs AS h SET order_id = d.order_id, state = 'dispatched', dispatched_at = $2,
         delivered_at = d.delivered_at, finished_at = NULL
         FROM unnest($3::text[], $4::text[], $5::bigint[]) AS d(host_id, order_id, delivered_at)
        WHERE h.rollout_id = $1 AND h.host_id = d.host_id AND h.state = 'queued'
        RETURNING h.host_id`,
      [
        rolloutId,
        at,
        dispatches.map((d) => d.hostId),
        dispatches.map((d) => d.orderId),
        dispatches.map((d) => d.deliveredAt),
      ],
    );
    return rows.map((row) => row.host_id);
  }

  async transition(rolloutId: string, hostId: string, from: HostRunState, write: HostRunWrite): Promise<boolean> {
    const where = 'WHERE rollout_id = $1 AND host_id = $2 AND state = $3 RETURNING 1';
    const key = [rolloutId, hostId, from];
    let rows: unknown[];
    switch (write.to) {
      case 'queued':
        rows = await this.executor.query(
          `UPDATE host_runs SET state = 'queued', order_id = NULL, dispatched_at = NULL, delivered_at = NULL, finished_at = NULL,
             counted_failure = false, answered = false, error_code = NULL, reason = NULL, health = NULL,
             after_change = NULL, packages = NULL, rehearsal = NULL ${where}`,
          key,
        );
        break;
      case 'dispatched':
        rows = await this.executor.query(
          `UPDATE host_runs SET order_id = $4, state = 'dispatched', dispatched_at = $5, delivered_at = $6, finished_at = NULL ${where}`,
          [...key, write.orderId, write.at, write.deliveredAt],
        );
        break;
      case 'reverting':
        rows = await this.executor.query(
          `UPDATE host_runs SET revert_order_id = $4, state = 'reverting', dispatched_at = $5 ${where}`,
          [...key, write.revertOrderId, write.at],
        );
        break;
      default:
        rows = await this.executor.query(
          `UPDATE host_runs SET state = $4,
             changed = COALESCE($5::boolean, changed),
             counted_failure = COALESCE($6::boolean, counted_failure),
             finished_at = CASE WHEN $7::boolean THEN $8::bigint ELSE finished_at END,
             error_code = CASE WHEN $9::boolean THEN $10::text ELSE error_code END,
             reason = CASE WHEN $9::boolean THEN $11::text ELSE reason END,
             health = COALESCE($12::jsonb, health),
             rehearsal = COALESCE($13::jsonb, rehearsal),
             after_change = COALESCE($14::jsonb, after_change),
             packages = COALESCE($15::jsonb, packages),
             answered = COALESCE($16::boolean, answered),
             delivered_at = COALESCE(delivered_at, $17::bigint)
           ${where}`,
          [
            ...key,
            write.to,
            write.changed ?? null,
            write.countedFailure ?? null,
            write.finishedAt !== undefined,
            write.finishedAt ?? null,
            write.errorCode !== undefined || write.reason !== undefined,
            write.errorCode ?? null,
            write.reason ?? null,
            jsonOrNull(write.health),
            jsonOrNull(write.rehearsal),
            // SQLite's `write.afterChange ? … : null`: any falsy report leaves the column as it is.
            write.afterChange ? JSON.stringify(write.afterChange) : null,
            jsonOrNull(write.packages),
            write.answered ? true : null,
            write.deliveredAt ?? null,
          ],
        );
    }
    return rows.length === 1;
  }

  async markDelivered(rolloutId: string, hostId: string, at: number): Promise<void> {
    await this.executor.query(
      `UPDATE host_runs SET delivered_at = $3
        WHERE rollout_id = $1 AND host_id = $2 AND state = 'dispatched' AND delivered_at IS NULL`,
      [rolloutId, hostId, at],
    );
  }

  async shiftInFlight(rolloutId: string, ms: number): Promise<void> {
    await this.executor.query(
      `UPDATE host_runs SET dispatched_at = dispatched_at + $2, delivered_at = delivered_at + $2
        WHERE rollout_id = $1 AND state IN ('dispatched', 'delivered', 'snapshotted', 'applying', 'verifying', 'reverting')`,
      [rolloutId, ms],
    );
  }

  async setChanged(rolloutId: string, hostId: string, changed: boolean): Promise<void> {
    await this.executor.query('UPDATE host_runs SET changed = $3 WHERE rollout_id = $1 AND host_id = $2', [
      rolloutId,
      hostId,
      changed,
    ]);
  }

  private async rows(where: string, values: readonly unknown[]): Promise<HostRunRecord[]> {
    return (await this.executor.query<HostRunRow>(`SELECT ${COLUMNS} FROM host_runs ${where}`, values)).map(toRecord);
  }
}
