import type { Approval, PromotionDecision, RolloutRequest, RolloutState } from '@fleetpatch/shared';
import type { Public } from '../repositories.js';
import {
  ROLLOUT_COLUMNS_BUT_REQUEST,
  type RolloutRecord,
  type RolloutRepository,
  RolloutRequests,
  type RolloutRow,
  type RolloutRowWithoutRequest,
  rolloutFromRow,
} from '../rollout-repository.js';
import type { PostgresExecutor } from './postgres-executor.js';

/**
 * Every column but `promotion`, which only `promotion()` reads. The request as text: parsed (once,
 * see `rolloutFromRow`) the way SQLite's is.
 */
const COLUMNS = `${ROLLOUT_COLUMNS_BUT_REQUEST}, request::text AS request`;

/**
 * Rollouts and their approvals on PostgreSQL: the twin of `RolloutRepository`. Where SQLite orders
 * by `created_at` alone, ties (rollouts created in the same millisecond) are broken by id here, so
 * the order does not depend on a plan PostgreSQL is free to change.
 */
export class PostgresRolloutRepository implements Public<RolloutRepository> {
  private readonly requests = new RolloutRequests();

  constructor(private readonly db: PostgresExecutor) {}

  async insert(
    rollout: { id: string; patchId: string; request: RolloutRequest; state: RolloutState; createdBy: string },
    at: string,
  ): Promise<void> {
    this.requests.inserted(rollout.id);
    await this.db.query(
      `INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $6)`,
      [rollout.id, rollout.patchId, JSON.stringify(rollout.request), rollout.state, rollout.createdBy, at],
    );
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    return await this.requests.read(
      id,
      async () =>
        await this.db.one<RolloutRowWithoutRequest>(
          `SELECT ${ROLLOUT_COLUMNS_BUT_REQUEST} FROM rollouts WHERE id = $1`,
          [id],
        ),
      async () => await this.db.one<RolloutRow>(`SELECT ${COLUMNS} FROM rollouts WHERE id = $1`, [id]),
    );
  }

  async inStates(states: readonly RolloutState[]): Promise<RolloutRecord[]> {
    const rows = await this.db.query<RolloutRow>(
      `SELECT ${COLUMNS} FROM rollouts WHERE state = ANY($1::text[]) ORDER BY created_at, id`,
      [states],
    );
    return rows.map(rolloutFromRow);
  }

  async list(limit: number): Promise<RolloutRecord[]> {
    const rows = await this.db.query<RolloutRow>(
      `SELECT ${COLUMNS} FROM rollouts ORDER BY created_at DESC, id DESC LIMIT $1`,
      [limit],
    );
    return rows.map(rolloutFromRow);
  }

  async setState(
    id: string,
    state: RolloutState,
    reason: string | null,
    final: boolean,
    at: string,
    from?: RolloutState,
  ): Promise<boolean> {
    return await this.db.changedOne(
      `UPDATE rollouts SET state = $2::text, state_reason = $3, updated_at = $5::timestamptz,
         started_at = CASE WHEN $2::text = 'running' AND started_at IS NULL THEN $5::timestamptz ELSE started_at END,
         finished_at = CASE WHEN $4::boolean THEN $5::timestamptz ELSE NULL END
       WHERE id = $1 AND ($6::text IS NULL OR state = $6::text) RETURNING id`,
      [id, state, reason, final, at, from ?? null],
    );
  }

  async freezeTarget(id: string, hostCount: number, waveCount: number): Promise<void> {
    await this.db.query('UPDATE rollouts SET host_count = $2, wave_count = $3 WHERE id = $1', [
      id,
      hostCount,
      waveCount,
    ]);
  }

  async setWave(id: string, wave: number, bakeUntil: number | null, at: string): Promise<void> {
    await this.db.query('UPDATE rollouts SET current_wave = $2, bake_until = $3, updated_at = $4 WHERE id = $1', [
      id,
      wave,
      bakeUntil,
      at,
    ]);
  }

  /** Returns false when this approver had already approved. */
  async addApproval(id: string, approver: string, at: string): Promise<boolean> {
    const rows = await this.db.query(
      'INSERT INTO approvals (rollout_id, approver, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING approver',
      [id, approver, at],
    );
    return rows.length > 0;
  }

  async setPromotion(id: string, decision: PromotionDecision): Promise<void> {
    await this.db.query('UPDATE rollouts SET promotion = $2::jsonb WHERE id = $1', [id, JSON.stringify(decision)]);
  }

  async promotion(id: string): Promise<PromotionDecision | undefined> {
    const row = await this.db.one<{ promotion: PromotionDecision | null }>(
      'SELECT promotion FROM rollouts WHERE id = $1',
      [id],
    );
    return row?.promotion ?? undefined;
  }

  async ofPatches(patchIds: readonly string[]): Promise<RolloutRecord[]> {
    const rows = await this.db.query<RolloutRow>(
      `SELECT ${COLUMNS} FROM rollouts WHERE patch_id = ANY($1::text[]) ORDER BY created_at, id`,
      [patchIds],
    );
    return rows.map(rolloutFromRow);
  }

  async revertedSince(id: string, at: string): Promise<boolean> {
    const row = await this.db.one<{ reverted: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM events WHERE rollout_id = $1 AND at >= $2
         AND type IN ('rollout.reverting', 'host.revert_requested')) AS reverted`,
      [id, at],
    );
    return row?.reverted === true;
  }

  async approvals(id: string): Promise<Approval[]> {
    return await this.db.query<Approval>(
      'SELECT approver, at FROM approvals WHERE rollout_id = $1 ORDER BY at, approver',
      [id],
    );
  }
}
