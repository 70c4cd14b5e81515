import type {
  AfterChangeReport,
  HealthCheckResult,
  HostRunState,
  PackageMove,
  RehearsalReport,
} from '@fleetpatch/shared';
import type { Db } from './database.js';

/** A host's place in a rollout, planned at its start: its wave and its position in the wave. */
export interface QueuedHostRun {
  hostId: string;
  wave: number;
  position: number;
}

export interface HostRunRecord {
  rolloutId: string;
  hostId: string;
  wave: number;
  position: number;
  state: HostRunState;
  orderId: string | null;
  revertOrderId: string | null;
  /** Whether the host carries the change now, as its agent last reported. */
  changed: boolean;
  /** Its current apply order has answered (a result came in), or provably never reached the agent. */
  answered: boolean;
  /** Counted against the failure budget (stays true if the host is later reverted). */
  countedFailure: boolean;
  dispatchedAt: number | null;
  /**
   * When its current apply order reached the host: handed to the agent's live connection, or reported
   * by the agent. Null while the order waits for a host that was away (offline policy `wait`): such a
   * run is judged by its delivery deadline alone, and hostTimeoutSeconds runs from here.
   */
  deliveredAt: number | null;
  finishedAt: number | null;
  errorCode: string | null;
  reason: string | null;
  health: HealthCheckResult[] | null;
  /** The rehearsed revert its agent reported (a canary of a rollout with `rehearseRevert`). */
  rehearsal: RehearsalReport | null;
  /** The agent's last after-change report: units restarted, services on old libraries, reboot. */
  afterChange: AfterChangeReport | null;
  /**
   * A package change: the packages its apply moved (or would have) on this host, as the agent
   * resolved them — each from which version to which, and how its prior .deb was kept. Null until
   * an apply result names them (file changes, not_applicable, a result before any snapshot).
   */
  packages: PackageMove[] | null;
}

export interface HostRunRow {
  rollout_id: string;
  host_id: string;
  wave: number;
  position: number;
  state: string;
  order_id: string | null;
  revert_order_id: string | null;
  changed: number;
  counted_failure: number;
  answered: number;
  dispatched_at: number | null;
  delivered_at: number | null;
  finished_at: number | null;
  error_code: string | null;
  reason: string | null;
  health: string | null;
  rehearsal: string | null;
  after_change: string | null;
  packages: string | null;
}

export function toRecord(row: HostRunRow): HostRunRecord {
  return {
    rolloutId: row.rollout_id,
    hostId: row.host_id,
    wave: row.wave,
    position: row.position,
    state: row.state as HostRunState,
    orderId: row.order_id,
    revertOrderId: row.revert_order_id,
    changed: row.changed === 1,
    countedFailure: row.counted_failure === 1,
    answered: row.answered === 1,
    dispatchedAt: row.dispatched_at,
    deliveredAt: row.delivered_at,
    finishedAt: row.finished_at,
    errorCode: row.error_code,
    reason: row.reason,
    health: row.health === null ? null : (JSON.parse(row.health) as HealthCheckResult[]),
    rehearsal: row.rehearsal === null ? null : (JSON.parse(row.rehearsal) as RehearsalReport),
    afterChange: row.after_change === null ? null : (JSON.parse(row.after_change) as AfterChangeReport),
    packages: row.packages === null ? null : (JSON.parse(row.packages) as PackageMove[]),
  };
}

/**
 * The columns every read of whole host runs selects, in `HostRunValues`' order. The rows come back as
 * arrays (better-sqlite3's `raw`): an object per row, a property set per column, costs about twice the
 * array (measured: 5,000 rows in ~21 ms as objects, ~13 ms as arrays and records), and a rollout's
 * full status reads every host's.
 */
const COLUMNS =
  'rollout_id, host_id, wave, position, state, order_id, revert_order_id, changed, counted_failure, answered, dispatched_at, delivered_at, finished_at, error_code, reason, health, rehearsal, after_change, packages';

/** `COLUMNS` of the host runs aliased `h` in a join. */
const PREFIXED_COLUMNS = COLUMNS.split(', ')
  .map((column) => `h.${column}`)
  .join(', ');

/** A host-run row as `COLUMNS` reads it. */
type HostRunValues = [
  rollout_id: string,
  host_id: string,
  wave: number,
  position: number,
  state: string,
  order_id: string | null,
  revert_order_id: string | null,
  changed: number,
  counted_failure: number,
  answered: number,
  dispatched_at: number | null,
  delivered_at: number | null,
  finished_at: number | null,
  error_code: string | null,
  reason: string | null,
  health: string | null,
  rehearsal: string | null,
  after_change: string | null,
  packages: string | null,
];

/** The record of a row read with `COLUMNS` (`HostRunValues` types each position against the row's). */
function recordOf(values: unknown): HostRunRecord {
  const v = values as HostRunValues;
  return toRecord({
    rollout_id: v[0],
    host_id: v[1],
    wave: v[2],
    position: v[3],
    state: v[4],
    order_id: v[5],
    revert_order_id: v[6],
    changed: v[7],
    counted_failure: v[8],
    answered: v[9],
    dispatched_at: v[10],
    delivered_at: v[11],
    finished_at: v[12],
    error_code: v[13],
    reason: v[14],
    health: v[15],
    rehearsal: v[16],
    after_change: v[17],
    packages: v[18],
  });
}

/** The fields an ordinary transition may write besides the state (undefined: left as it is). */
export interface HostRunOutcome {
  changed?: boolean;
  /** The current apply order has answered: written with the result it answered with (one write, not two). */
  answered?: true;
  countedFailure?: boolean;
  finishedAt?: number | null;
  errorCode?: string | null;
  reason?: string | null;
  health?: HealthCheckResult[] | null;
  rehearsal?: RehearsalReport | null;
  afterChange?: AfterChangeReport | null;
  packages?: PackageMove[] | null;
  /** When the order reached the host, for a run that leaves `dispatched`: written only where none is. */
  deliveredAt?: number;
}

/**
 * What a host-run transition writes, shaped by the state it goes to: a dispatch records its order,
 * a requeue clears the previous attempt, every other move records an outcome.
 */
export type HostRunWrite =
  | { to: 'queued' }
  /** `deliveredAt`: `at` when the host is connected to take the order, null when it waits for the host. */
  | { to: 'dispatched'; orderId: string; at: number; deliveredAt: number | null }
  | { to: 'reverting'; revertOrderId: string; at: number }
  | ({ to: Exclude<HostRunState, 'queued' | 'dispatched' | 'reverting'> } & HostRunOutcome);

/** One queued host run's dispatch (`HostRunRepository.dispatchQueued`); `deliveredAt` as in `HostRunWrite`. */
export interface QueuedDispatch {
  hostId: string;
  orderId: string;
  deliveredAt: number | null;
}

/** Which host runs one page of `HostRunRepository.page` holds. */
export interface HostRunPageFilter {
  state?: HostRunState | undefined;
  wave?: number | undefined;
  /** Resume after this host run (the last one of the previous page). */
  after?: { wave: number; position: number } | undefined;
  limit: number;
}

/**
 * One row per host per rollout. Every query here is served by an index on (rollout_id, wave, state),
 * (host_id, state) or the order id, so the hot paths never scan the fleet.
 */
export class HostRunRepository {
  private readonly statements;

  constructor(db: Db) {
    /**
     * A read of whole host runs, `SELECT COLUMNS` and the rest, as arrays (see `recordOf`). The rest
     * names its table: postgres-schema.test.ts reads from the SQL which tables are sorted by row number.
     */
    const runs = (rest: string) => db.prepare(`SELECT ${COLUMNS} ${rest}`).raw(true);
    this.statements = {
      insert: db.prepare(
        "INSERT INTO host_runs (rollout_id, host_id, wave, position, state) VALUES (@rolloutId, @hostId, @wave, @position, 'queued')",
      ),
      forRollout: runs(`FROM host_runs WHERE rollout_id = ? ORDER BY wave, position`),
      forWave: runs(`FROM host_runs WHERE rollout_id = ? AND wave = ? ORDER BY position`),
      get: runs(`FROM host_runs WHERE rollout_id = ? AND host_id = ?`),
      byOrder: runs(`FROM host_runs WHERE order_id = ?`),
      byRevertOrder: runs(`FROM host_runs WHERE revert_order_id = ?`),
      // One probe of host_runs_wave_state_position per state asked: the cost follows the hosts in those states.
      countInWave: db.prepare(
        `SELECT state, count(*) AS n FROM host_runs
         WHERE rollout_id = ? AND wave = ? AND state IN (SELECT value FROM json_each(?)) GROUP BY state`,
      ),
      anyQueued: db.prepare(
        "SELECT EXISTS (SELECT 1 FROM host_runs WHERE rollout_id = ? AND wave = ? AND state = 'queued') AS found",
      ),
      // Covered by host_runs_wave_state_position: a summary never reads a host row.
      countByWaveAndState: db.prepare(
        'SELECT wave, state, count(*) AS n FROM host_runs WHERE rollout_id = ? GROUP BY wave, state',
      ),
      firstFailures: runs(
        `FROM host_runs WHERE rollout_id = ? AND counted_failure = 1 ORDER BY wave, position LIMIT ?`,
      ),
      // One statement for every filter: a null filter matches all. Row-value comparison resumes after the cursor.
      page: runs(`FROM host_runs WHERE rollout_id = @rolloutId
           AND (@state IS NULL OR state = @state) AND (@wave IS NULL OR wave = @wave)
           AND (wave, position) > (@afterWave, @afterPosition)
         ORDER BY wave, position LIMIT @limit`),
      // Led by state (host_runs_state), so the cost follows the few hosts in those states, not the rollout's size.
      countInStates: db.prepare(
        `SELECT state, count(*) AS n FROM host_runs INDEXED BY host_runs_state
         WHERE state IN (SELECT value FROM json_each(?)) AND rollout_id = ? GROUP BY state`,
      ),
      // In position order from host_runs_wave_state_position: the LIMIT stops the read, nothing is sorted.
      // host_runs_wave_state_position in order: the LIMIT ends the read.
      inWaveAndState: runs(`FROM host_runs WHERE rollout_id = ? AND wave = ? AND state = ? ORDER BY position LIMIT ?`),
      inStates: runs(
        `FROM host_runs WHERE rollout_id = ? AND state IN (SELECT value FROM json_each(?)) ORDER BY wave, position`,
      ),
      inStatesEverywhere: runs(
        `FROM host_runs WHERE state IN (SELECT value FROM json_each(?)) AND dispatched_at IS NOT NULL`,
      ),
      revertCandidates: runs(`FROM host_runs WHERE rollout_id = ? AND changed = 1
           AND state IN ('healthy', 'failed', 'timed_out', 'cancelled', 'skipped', 'reverted', 'revert_failed')
           AND (state != 'revert_failed' OR revert_order_id IS NULL)
         ORDER BY wave, position LIMIT ?`),
      recentForHost: runs(`FROM host_runs WHERE host_id = ? ORDER BY rowid DESC LIMIT ?`),
      // Joined, so its columns are named by table (`h.state`): `rollouts` has a `state` too.
      activeForHost: db
        .prepare(`SELECT ${PREFIXED_COLUMNS} FROM host_runs h JOIN rollouts r ON r.id = h.rollout_id
         WHERE h.host_id = ? AND h.state IN (SELECT value FROM json_each(?))`)
        .raw(true),
      // Every state write below names the state it moves from: a stale record changes nothing.
      dispatch: db.prepare(
        "UPDATE host_runs SET order_id = @orderId, state = 'dispatched', dispatched_at = @at, delivered_at = @deliveredAt, finished_at = NULL WHERE rollout_id = @rolloutId AND host_id = @hostId AND state = @from",
      ),
      failures: db.prepare('SELECT count(*) AS n FROM host_runs WHERE rollout_id = ? AND counted_failure = 1'),
      waveFailures: db.prepare(
        'SELECT count(*) AS n FROM host_runs WHERE rollout_id = ? AND wave = ? AND counted_failure = 1',
      ),
      requeue: db.prepare(
        "UPDATE host_runs SET state = 'queued', order_id = NULL, dispatched_at = NULL, delivered_at = NULL, finished_at = NULL, counted_failure = 0, answered = 0, error_code = NULL, reason = NULL, health = NULL, after_change = NULL, packages = NULL, rehearsal = NULL WHERE rollout_id = @rolloutId AND host_id = @hostId AND state = @from",
      ),
      answered: db.prepare('UPDATE host_runs SET answered = 1 WHERE rollout_id = @rolloutId AND host_id = @hostId'),
      forgetRevert: db.prepare(
        'UPDATE host_runs SET revert_order_id = NULL WHERE rollout_id = @rolloutId AND host_id = @hostId',
      ),
      dispatchRevert: db.prepare(
        "UPDATE host_runs SET revert_order_id = @orderId, state = 'reverting', dispatched_at = @at WHERE rollout_id = @rolloutId AND host_id = @hostId AND state = @from",
      ),
      update: db.prepare(
        `UPDATE host_runs SET state = @state,
           changed = COALESCE(@changed, changed),
           counted_failure = COALESCE(@countedFailure, counted_failure),
           answered = COALESCE(@answered, answered),
           delivered_at = COALESCE(delivered_at, @deliveredAt),
           finished_at = CASE WHEN @setFinished THEN @finishedAt ELSE finished_at END,
           error_code = CASE WHEN @setError THEN @errorCode ELSE error_code END,
           reason = CASE WHEN @setError THEN @reason ELSE reason END,
           health = COALESCE(@health, health),
           rehearsal = COALESCE(@rehearsal, rehearsal),
           after_change = COALESCE(@afterChange, after_change),
           packages = COALESCE(@packages, packages)
         WHERE rollout_id = @rolloutId AND host_id = @hostId AND state = @from`,
      ),
      markDelivered: db.prepare(
        "UPDATE host_runs SET delivered_at = @at WHERE rollout_id = @rolloutId AND host_id = @hostId AND state = 'dispatched' AND delivered_at IS NULL",
      ),
      shiftInFlight: db.prepare(
        `UPDATE host_runs SET dispatched_at = dispatched_at + @ms, delivered_at = delivered_at + @ms
         WHERE rollout_id = @rolloutId AND state IN ('dispatched', 'delivered', 'snapshotted', 'applying', 'verifying', 'reverting')`,
      ),
      setChanged: db.prepare(
        'UPDATE host_runs SET changed = @changed WHERE rollout_id = @rolloutId AND host_id = @hostId',
      ),
    };
  }

  /** A rollout's hosts as its start plans them, each queued at its place (inside the start's transaction). */
  async insertQueued(rolloutId: string, runs: readonly QueuedHostRun[]): Promise<void> {
    for (const run of runs) this.statements.insert.run({ rolloutId, ...run });
  }

  async forRollout(rolloutId: string): Promise<HostRunRecord[]> {
    return this.statements.forRollout.all(rolloutId).map(recordOf);
  }

  async forWave(rolloutId: string, wave: number): Promise<HostRunRecord[]> {
    return this.statements.forWave.all(rolloutId, wave).map(recordOf);
  }

  async get(rolloutId: string, hostId: string): Promise<HostRunRecord | undefined> {
    const row = this.statements.get.get(rolloutId, hostId);
    return row === undefined ? undefined : recordOf(row);
  }

  async byOrderId(orderId: string): Promise<HostRunRecord | undefined> {
    const row = this.statements.byOrder.get(orderId);
    return row === undefined ? undefined : recordOf(row);
  }

  async byRevertOrderId(orderId: string): Promise<HostRunRecord | undefined> {
    const row = this.statements.byRevertOrder.get(orderId);
    return row === undefined ? undefined : recordOf(row);
  }

  /**
   * Host runs of one wave in one of `states`, counted by state. The advance loop asks after every
   * burst of results: it counts the few hosts in flight, never every host of a wave of thousands.
   */
  async countInWave(
    rolloutId: string,
    wave: number,
    states: readonly HostRunState[],
  ): Promise<Map<HostRunState, number>> {
    const rows = this.statements.countInWave.all(rolloutId, wave, JSON.stringify(states)) as {
      state: HostRunState;
      n: number;
    }[];
    return new Map(rows.map((row) => [row.state, row.n]));
  }

  /** Whether any host of the wave still waits for its order: one index probe, however many do. */
  async anyQueued(rolloutId: string, wave: number): Promise<boolean> {
    return (this.statements.anyQueued.get(rolloutId, wave) as { found: number }).found === 1;
  }

  /** Every host run of a rollout counted by wave and state, without reading one host row. */
  async countByWaveAndState(rolloutId: string): Promise<{ wave: number; state: HostRunState; n: number }[]> {
    return this.statements.countByWaveAndState.all(rolloutId) as { wave: number; state: HostRunState; n: number }[];
  }

  /** The first `limit` host runs counted as failures, by wave and position. */
  async firstFailures(rolloutId: string, limit: number): Promise<HostRunRecord[]> {
    return this.statements.firstFailures.all(rolloutId, limit).map(recordOf);
  }

  /** At most `limit` host runs after `after` (by wave, then position), optionally in one state or wave. */
  async page(rolloutId: string, filter: HostRunPageFilter): Promise<HostRunRecord[]> {
    const rows = this.statements.page.all({
      rolloutId,
      state: filter.state ?? null,
      wave: filter.wave ?? null,
      afterWave: filter.after?.wave ?? -1,
      afterPosition: filter.after?.position ?? -1,
      limit: filter.limit,
    });
    return rows.map(recordOf);
  }

  /**
   * Host runs of a rollout in one of `states`, counted by state, through the state index: the revert
   * runner asks after every burst of results, and must not count every host of a large rollout to do it.
   */
  async countInStates(rolloutId: string, states: readonly HostRunState[]): Promise<Map<HostRunState, number>> {
    const rows = this.statements.countInStates.all(JSON.stringify(states), rolloutId) as {
      state: HostRunState;
      n: number;
    }[];
    return new Map(rows.map((row) => [row.state, row.n]));
  }

  async nextQueued(rolloutId: string, wave: number, limit: number): Promise<HostRunRecord[]> {
    return await this.inWaveAndState(rolloutId, wave, 'queued', limit);
  }

  /** The first `limit` host runs of one wave in one state, by position. */
  async inWaveAndState(rolloutId: string, wave: number, state: HostRunState, limit: number): Promise<HostRunRecord[]> {
    return this.statements.inWaveAndState.all(rolloutId, wave, state, limit).map(recordOf);
  }

  async inStates(rolloutId: string, states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    return this.statements.inStates.all(rolloutId, JSON.stringify(states)).map(recordOf);
  }

  /** Dispatched host runs in one of `states`, across all rollouts (index on state). */
  async inStatesEverywhere(states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    return this.statements.inStatesEverywhere.all(JSON.stringify(states)).map(recordOf);
  }

  /**
   * Finished hosts that still carry the change, at most `limit`: what a whole-rollout revert sends
   * orders to next. `reverted` is included because a late apply result can show a host changed after
   * all; `revert_failed` only when no revert order of ours failed on it (tried once, never again).
   */
  async revertCandidates(rolloutId: string, limit: number): Promise<HostRunRecord[]> {
    return this.statements.revertCandidates.all(rolloutId, limit).map(recordOf);
  }

  /** This host's latest host runs, newest first (index on host_id). */
  async recentForHost(hostId: string, limit: number): Promise<HostRunRecord[]> {
    return this.statements.recentForHost.all(hostId, limit).map(recordOf);
  }

  /** Host runs of this host, across rollouts, in one of `states` (used when its agent reconnects). */
  async forHostInStates(hostId: string, states: readonly HostRunState[]): Promise<HostRunRecord[]> {
    return this.statements.activeForHost.all(hostId, JSON.stringify(states)).map(recordOf);
  }

  async failures(rolloutId: string, wave?: number): Promise<number> {
    const row = (
      wave === undefined ? this.statements.failures.get(rolloutId) : this.statements.waveFailures.get(rolloutId, wave)
    ) as { n: number };
    return row.n;
  }

  async markAnswered(rolloutId: string, hostId: string): Promise<void> {
    this.statements.answered.run({ rolloutId, hostId });
  }

  /** Lets a whole-rollout revert try a host whose earlier revert failed (see RolloutEngine.revert). */
  async forgetRevertOrder(rolloutId: string, hostId: string): Promise<void> {
    this.statements.forgetRevert.run({ rolloutId, hostId });
  }

  /**
   * Dispatches queued host runs of one rollout at `at`, each with its order: what `transition` writes
   * for each from `queued`, in one call (one statement on PostgreSQL; here, one loop of the prepared
   * one). Returns the hosts written: a run no longer queued is not. Only `dispatchHostRuns` calls this.
   */
  async dispatchQueued(rolloutId: string, at: number, dispatches: readonly QueuedDispatch[]): Promise<string[]> {
    const written: string[] = [];
    for (const { hostId, orderId, deliveredAt } of dispatches) {
      if (this.statements.dispatch.run({ rolloutId, hostId, from: 'queued', orderId, at, deliveredAt }).changes === 1)
        written.push(hostId);
    }
    return written;
  }

  /**
   * Writes one host-run transition from `from`; returns false (and writes nothing) when the row is not
   * in `from`. Only `transitionHostRun` calls this: it checks the move against the table first.
   */
  async transition(rolloutId: string, hostId: string, from: HostRunState, write: HostRunWrite): Promise<boolean> {
    // Each statement's parameters are one object literal, never `{ ...key, more }`: better-sqlite3 binds
    // a spread-built object's named parameters ~12 µs slower per statement (measured), and every host
    // of a rollout takes two transitions.
    switch (write.to) {
      case 'queued':
        // Back in the queue with no order: an explicit retry sends it a new one.
        return this.statements.requeue.run({ rolloutId, hostId, from }).changes === 1;
      case 'dispatched':
        return (
          this.statements.dispatch.run({
            rolloutId,
            hostId,
            from,
            orderId: write.orderId,
            at: write.at,
            deliveredAt: write.deliveredAt,
          }).changes === 1
        );
      case 'reverting':
        return (
          this.statements.dispatchRevert.run({ rolloutId, hostId, from, orderId: write.revertOrderId, at: write.at })
            .changes === 1
        );
      default:
        return (
          this.statements.update.run({
            rolloutId,
            hostId,
            from,
            state: write.to,
            changed: write.changed === undefined ? null : write.changed ? 1 : 0,
            countedFailure: write.countedFailure === undefined ? null : write.countedFailure ? 1 : 0,
            answered: write.answered ? 1 : null,
            deliveredAt: write.deliveredAt ?? null,
            setFinished: write.finishedAt === undefined ? 0 : 1,
            finishedAt: write.finishedAt ?? null,
            setError: write.errorCode === undefined && write.reason === undefined ? 0 : 1,
            errorCode: write.errorCode ?? null,
            reason: write.reason ?? null,
            health: write.health === undefined || write.health === null ? null : JSON.stringify(write.health),
            rehearsal:
              write.rehearsal === undefined || write.rehearsal === null ? null : JSON.stringify(write.rehearsal),
            afterChange: write.afterChange ? JSON.stringify(write.afterChange) : null,
            packages: write.packages === undefined || write.packages === null ? null : JSON.stringify(write.packages),
          }).changes === 1
        );
    }
  }

  /**
   * An order that waited for its host is handed to the host's connection now (its hello): the host
   * timeout runs from `at`. Not a transition: the run stays `dispatched` until the agent reports.
   */
  async markDelivered(rolloutId: string, hostId: string, at: number): Promise<void> {
    this.statements.markDelivered.run({ rolloutId, hostId, at });
  }

  /**
   * The coordinator's wall clock was stepped by `ms`: the dispatch and delivery instants of the
   * rollout's orders still out (applies in flight, reverts) move with it, so that their deadlines
   * stay as far away as they were.
   */
  async shiftInFlight(rolloutId: string, ms: number): Promise<void> {
    this.statements.shiftInFlight.run({ rolloutId, ms });
  }

  /** Records whether the host carries the change, as a late result says; the state stays as it is. */
  async setChanged(rolloutId: string, hostId: string, changed: boolean): Promise<void> {
    this.statements.setChanged.run({ rolloutId, hostId, changed: changed ? 1 : 0 });
  }
}
