import type {
  RolloutRecord as ApiRolloutRecord,
  Approval,
  PromotionDecision,
  RolloutRequest,
  RolloutState,
} from '@fleetpatch/shared';
import type { Db } from './database.js';
import { KeptReads } from './kept-reads.js';

/**
 * A rollout as stored: the API's `RolloutRecord`, except that `bakeUntil` (when the current bake
 * ends) is in ms since epoch, which is what the engine compares with its clock. `RolloutView`
 * (engine/rollout-view.ts) turns it into the ISO string the API answers.
 */
export type RolloutRecord = Omit<ApiRolloutRecord, 'bakeUntil'> & { bakeUntil: number | null };

/** A rollouts row (less `promotion`), its request as text: as both stores read it (PostgreSQL casts its jsonb). */
export interface RolloutRow {
  id: string;
  patch_id: string;
  request: string;
  state: string;
  created_by: string;
  host_count: number;
  wave_count: number;
  current_wave: number;
  bake_until: number | null;
  state_reason: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** The rollouts running at once, and then some. */
const parsedRequests = new KeptReads<string, RolloutRequest>(64);

/**
 * A rollout is read after every burst of results and at every advance, and its request is never
 * written again once the rollout exists: the same text parses to the same request, so the last few
 * parses are kept by their text (a target listing 10,000 hosts is 130 KB of JSON). A stale copy
 * cannot be served: another text is another key, so a change a group member made is seen at once.
 */
function parseRequest(text: string): RolloutRequest {
  return parsedRequests.get(text) ?? parsedRequests.keep(text, JSON.parse(text) as RolloutRequest);
}

export function rolloutFromRow(row: RolloutRow): RolloutRecord {
  return {
    id: row.id,
    patchId: row.patch_id,
    request: parseRequest(row.request),
    state: row.state as RolloutState,
    createdBy: row.created_by,
    hostCount: row.host_count,
    waveCount: row.wave_count,
    currentWave: row.current_wave,
    bakeUntil: row.bake_until,
    stateReason: row.state_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

export class RolloutRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at)
         VALUES (@id, @patchId, @request, @state, @createdBy, @at, @at)`,
      ),
      byId: db.prepare('SELECT * FROM rollouts WHERE id = ?'),
      inStates: db.prepare(
        'SELECT * FROM rollouts WHERE state IN (SELECT value FROM json_each(?)) ORDER BY created_at',
      ),
      page: db.prepare('SELECT * FROM rollouts ORDER BY created_at DESC, id DESC LIMIT ?'),
      setState: db.prepare(
        `UPDATE rollouts SET state = @state, state_reason = @reason, updated_at = @at,
           started_at = CASE WHEN @state = 'running' AND started_at IS NULL THEN @at ELSE started_at END,
           finished_at = CASE WHEN @final THEN @at ELSE NULL END
         WHERE id = @id AND (@from IS NULL OR state = @from)`,
      ),
      freeze: db.prepare('UPDATE rollouts SET host_count = @hostCount, wave_count = @waveCount WHERE id = @id'),
      setWave: db.prepare(
        'UPDATE rollouts SET current_wave = @wave, bake_until = @bakeUntil, updated_at = @at WHERE id = @id',
      ),
      approve: db.prepare('INSERT OR IGNORE INTO approvals (rollout_id, approver, at) VALUES (?, ?, ?)'),
      approvers: db.prepare('SELECT approver, at FROM approvals WHERE rollout_id = ? ORDER BY at'),
      setPromotion: db.prepare('UPDATE rollouts SET promotion = ? WHERE id = ?'),
      promotion: db.prepare('SELECT promotion FROM rollouts WHERE id = ?'),
      ofPatches: db.prepare(
        'SELECT * FROM rollouts WHERE patch_id IN (SELECT value FROM json_each(?)) ORDER BY created_at, id',
      ),
      // A revert of the whole rollout, or of one of its hosts (by a person: the engine reverts nothing
      // by itself once a rollout has finished), at or after the given instant.
      revertedSince: db.prepare(
        `SELECT EXISTS (SELECT 1 FROM events WHERE rollout_id = ? AND at >= ?
           AND type IN ('rollout.reverting', 'host.revert_requested')) AS reverted`,
      ),
    };
  }

  async insert(
    rollout: { id: string; patchId: string; request: RolloutRequest; state: RolloutState; createdBy: string },
    at: string,
  ): Promise<void> {
    this.statements.insert.run({ ...rollout, request: JSON.stringify(rollout.request), at });
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const row = this.statements.byId.get(id) as RolloutRow | undefined;
    return row && rolloutFromRow(row);
  }

  async inStates(states: readonly RolloutState[]): Promise<RolloutRecord[]> {
    return (this.statements.inStates.all(JSON.stringify(states)) as RolloutRow[]).map(rolloutFromRow);
  }

  async list(limit: number): Promise<RolloutRecord[]> {
    return (this.statements.page.all(limit) as RolloutRow[]).map(rolloutFromRow);
  }

  /**
   * Writes the rollout's state; with `from`, only while the row is still in that state (a stale
   * record changes nothing). Returns whether the row was written.
   */
  async setState(
    id: string,
    state: RolloutState,
    reason: string | null,
    final: boolean,
    at: string,
    from?: RolloutState,
  ): Promise<boolean> {
    return (
      this.statements.setState.run({ id, state, reason, final: final ? 1 : 0, at, from: from ?? null }).changes === 1
    );
  }

  async freezeTarget(id: string, hostCount: number, waveCount: number): Promise<void> {
    this.statements.freeze.run({ id, hostCount, waveCount });
  }

  async setWave(id: string, wave: number, bakeUntil: number | null, at: string): Promise<void> {
    this.statements.setWave.run({ id, wave, bakeUntil, at });
  }

  /** Returns false when this approver had already approved. */
  async addApproval(id: string, approver: string, at: string): Promise<boolean> {
    return this.statements.approve.run(id, approver, at).changes > 0;
  }

  /** What start decided under the promotion order; written once, in start's transaction. */
  async setPromotion(id: string, decision: PromotionDecision): Promise<void> {
    this.statements.setPromotion.run(JSON.stringify(decision), id);
  }

  async promotion(id: string): Promise<PromotionDecision | undefined> {
    const row = this.statements.promotion.get(id) as { promotion: string | null } | undefined;
    return row?.promotion ? (JSON.parse(row.promotion) as PromotionDecision) : undefined;
  }

  /** The rollouts of these patches, oldest first. */
  async ofPatches(patchIds: readonly string[]): Promise<RolloutRecord[]> {
    return (this.statements.ofPatches.all(JSON.stringify(patchIds)) as RolloutRow[]).map(rolloutFromRow);
  }

  /** Whether the rollout, or a host of it, was asked to revert at or after `at` (ISO 8601). */
  async revertedSince(id: string, at: string): Promise<boolean> {
    return (this.statements.revertedSince.get(id, at) as { reverted: number }).reverted === 1;
  }

  async approvals(id: string): Promise<Approval[]> {
    return this.statements.approvers.all(id) as Approval[];
  }
}
