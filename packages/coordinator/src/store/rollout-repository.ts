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

/** Every column of a rollouts row but its request (and `promotion`, which only `promotion()` reads). */
export const ROLLOUT_COLUMNS_BUT_REQUEST = `id, patch_id, state, created_by, host_count, wave_count, current_wave,
  bake_until, state_reason, created_at, updated_at, started_at, finished_at`;

/** The rollouts running at once, and then some. */
const KEPT_REQUESTS = 64;
const parsedRequests = new KeptReads<string, RolloutRequest>(KEPT_REQUESTS);

/**
 * A rollout's request is never written again once the rollout exists: the same text parses to the
 * same request, so the last few parses are kept by their text (a target listing 10,000 hosts is
 * 130 KB of JSON). A stale copy cannot be served: another text is another key.
 */
function parseRequest(text: string): RolloutRequest {
  return parsedRequests.get(text) ?? parsedRequests.keep(text, JSON.parse(text) as RolloutRequest);
}

export function rolloutFromRow(row: RolloutRow): RolloutRecord {
  return rolloutWithRequest(row, parseRequest(row.request));
}

/** A rollouts row without its request: what `RolloutRequests.read` asks for once the request is kept. */
export type RolloutRowWithoutRequest = Omit<RolloutRow, 'request'>;

function rolloutWithRequest(row: RolloutRowWithoutRequest, request: RolloutRequest): RolloutRecord {
  return {
    id: row.id,
    patchId: row.patch_id,
    request,
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

/**
 * The requests of the rollouts read last, by rollout id, for `get`: the engine reads a rollout after
 * every result (its request decides how the host is judged), and even keyed by its text a request
 * cost a read of that text and a hash of it each time: 200–320 µs per read of a rollout whose target
 * lists 10,000 hosts, more than everything else the coordinator does per host. A request is written
 * once, with its row, and never again (in a coordinator group too: no member updates it), so once
 * kept it is only the rest of the row that is read.
 */
export class RolloutRequests {
  private readonly byId = new KeptReads<string, RolloutRequest>(KEPT_REQUESTS);

  /** Reads a rollout: the row without its request when the request is kept, whole otherwise. */
  async read(
    id: string,
    withoutRequest: () => Promise<RolloutRowWithoutRequest | undefined>,
    whole: () => Promise<RolloutRow | undefined>,
  ): Promise<RolloutRecord | undefined> {
    const kept = this.byId.get(id);
    if (kept !== undefined) {
      const row = await withoutRequest();
      return row && rolloutWithRequest(row, kept);
    }
    const row = await whole();
    if (row === undefined) return undefined;
    const rollout = rolloutFromRow(row);
    this.byId.keep(id, rollout.request);
    return rollout;
  }

  /**
   * A rollout is inserted with this id: whatever was kept under it is forgotten (its insert was
   * rolled back, and ids are never reused otherwise, but a kept request must be the row's).
   */
  inserted(id: string): void {
    this.byId.forget(id);
  }
}

export class RolloutRepository {
  private readonly statements;
  private readonly requests = new RolloutRequests();

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at)
         VALUES (@id, @patchId, @request, @state, @createdBy, @at, @at)`,
      ),
      byId: db.prepare('SELECT * FROM rollouts WHERE id = ?'),
      byIdWithoutRequest: db.prepare(`SELECT ${ROLLOUT_COLUMNS_BUT_REQUEST} FROM rollouts WHERE id = ?`),
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
    this.requests.inserted(rollout.id);
    this.statements.insert.run({ ...rollout, request: JSON.stringify(rollout.request), at });
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    return await this.requests.read(
      id,
      async () => this.statements.byIdWithoutRequest.get(id) as RolloutRowWithoutRequest | undefined,
      async () => this.statements.byId.get(id) as RolloutRow | undefined,
    );
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
