import { DRIVEN_STATES } from '../engine/engine-interfaces.js';
import type { PostgresExecutor } from '../store/postgres/postgres-executor.js';

interface Held {
  token: number;
  /** performance.now() until which this coordinator may act on the lease: before the database's expiry. */
  validUntil: number;
}

/**
 * Which coordinator drives which rollout: one lease row per rollout, with a fencing token that grows
 * each time the lease changes hands. The driver renews its leases on every tick; a coordinator that
 * dies stops renewing, and once `expires_at` (the database's clock) has passed, any other takes the
 * lease with the next token. A coordinator trusts its own lease only for 80 % of its length, counted
 * from when it asked (its own monotonic clock): it stops driving before anyone else may start.
 *
 * The lease decides who drives (ticks, advances, measures); the engine step lock keeps the steps
 * themselves one at a time, so even two coordinators that both believed they drove could not
 * dispatch a host twice. Before advancing, the driver checks its token under that lock (`confirm`).
 */
export class RolloutLeases {
  private readonly held = new Map<string, Held>();

  constructor(
    private readonly db: PostgresExecutor,
    readonly coordinatorId: string,
    readonly leaseMs: number,
  ) {}

  /**
   * Renews this coordinator's leases among `rolloutIds` and takes those that are free or expired
   * (of rollouts that need a driver: DRIVEN_STATES).
   * Returns the ids it has newly taken (a first lease, or one taken over), whose in-flight orders the
   * caller resends: what the coordinator before it sent may not have reached the agent.
   */
  async acquire(rolloutIds: readonly string[]): Promise<string[]> {
    const wanted = [...new Set(rolloutIds)].sort(); // one order for every coordinator: no deadlock
    if (wanted.length === 0) return [];
    const askedAt = performance.now();
    const rows = await this.db.query<{ rollout_id: string; token: number }>(
      `INSERT INTO rollout_leases (rollout_id, holder, token, expires_at)
         SELECT r.id, $2, 1, now() + $3 * interval '1 millisecond'
           FROM rollouts r WHERE r.id = ANY($1::text[]) AND r.state = ANY($4::text[])
          ORDER BY r.id
       ON CONFLICT (rollout_id) DO UPDATE SET
         token = CASE WHEN rollout_leases.holder = EXCLUDED.holder AND rollout_leases.expires_at > now()
                      THEN rollout_leases.token ELSE rollout_leases.token + 1 END,
         holder = EXCLUDED.holder,
         expires_at = EXCLUDED.expires_at
       WHERE rollout_leases.holder = EXCLUDED.holder OR rollout_leases.expires_at <= now()
       RETURNING rollout_id, token`,
      [wanted, this.coordinatorId, this.leaseMs, DRIVEN_STATES],
    );
    const validUntil = askedAt + this.leaseMs * 0.8;
    const taken: string[] = [];
    const granted = new Set<string>();
    for (const row of rows) {
      granted.add(row.rollout_id);
      if (this.held.get(row.rollout_id)?.token !== row.token) taken.push(row.rollout_id);
      this.held.set(row.rollout_id, { token: row.token, validUntil });
    }
    for (const id of wanted) if (!granted.has(id)) this.held.delete(id); // another coordinator drives it
    return taken;
  }

  /** Lets go of every lease held but those of `rolloutIds` (the rollouts that are done need none). */
  async releaseExcept(rolloutIds: readonly string[]): Promise<void> {
    const keep = new Set(rolloutIds);
    await this.release([...this.held.keys()].filter((id) => !keep.has(id)));
  }

  /** Whether this coordinator drives the rollout now, by what it knows (no query). */
  drives(rolloutId: string): boolean {
    const held = this.held.get(rolloutId);
    return held !== undefined && performance.now() < held.validUntil;
  }

  /**
   * The fence, asked under the engine step lock before the driver acts: its token is still the
   * lease's and the lease has not expired by the database's clock. A coordinator that stalled past
   * its lease learns here that another took over, and acts no more.
   */
  async confirm(rolloutId: string): Promise<boolean> {
    const held = this.held.get(rolloutId);
    if (!held || performance.now() >= held.validUntil) return false;
    const row = await this.db.one(
      'SELECT 1 FROM rollout_leases WHERE rollout_id = $1 AND holder = $2 AND token = $3 AND expires_at > now()',
      [rolloutId, this.coordinatorId, held.token],
    );
    if (!row) this.held.delete(rolloutId);
    return row !== undefined;
  }

  /** Lets go of leases (a finished rollout; every one at an orderly shutdown, so another takes over at once). */
  async release(rolloutIds: readonly string[] = [...this.held.keys()]): Promise<void> {
    for (const id of rolloutIds) this.held.delete(id);
    if (rolloutIds.length === 0) return;
    // Expired, not deleted: the row keeps its token, so a rollout that moves again (a retry, a revert)
    // is leased with the next token, never one an earlier holder might still remember.
    await this.db.query(
      'UPDATE rollout_leases SET expires_at = now() WHERE holder = $1 AND rollout_id = ANY($2::text[]) AND expires_at > now()',
      [this.coordinatorId, rolloutIds],
    );
  }

  /** Forgets leases without letting go of them: the next `acquire` reports them as newly taken. */
  forget(rolloutIds: readonly string[]): void {
    for (const id of rolloutIds) this.held.delete(id);
  }

  /** Every live lease of the group (any holder), by rollout id. */
  async all(): Promise<{ rolloutId: string; holder: string; token: number; expiresAt: string }[]> {
    const rows = await this.db.query<{ rollout_id: string; holder: string; token: number; expires_at: string }>(
      'SELECT rollout_id, holder, token, expires_at FROM rollout_leases WHERE expires_at > now() ORDER BY rollout_id',
    );
    return rows.map((row) => ({
      rolloutId: row.rollout_id,
      holder: row.holder,
      token: row.token,
      expiresAt: row.expires_at,
    }));
  }

  /** The rollouts this coordinator holds the lease of (for the status and tests). */
  heldIds(): string[] {
    return [...this.held.keys()].filter((id) => this.drives(id));
  }
}
