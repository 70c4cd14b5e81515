import type { PostgresExecutor } from '../store/postgres/postgres-executor.js';

/** An agent this coordinator said is gone (see `GroupPresence.unwritten`). */
const GONE = Symbol('gone');

/**
 * Which agents are connected to which coordinator of the group. Each coordinator writes its own
 * agents' rows and a heartbeat; a row counts only while its coordinator's heartbeat is fresh, so the
 * agents of a coordinator that died stop counting as online within `staleMs`, without anyone having
 * to clean up after it. Read every heartbeat into memory: the engine asks `isOnline` synchronously.
 */
export class GroupPresence {
  /** Agents connected to other coordinators of the group → the protocol version each agreed there. */
  private elsewhere = new Map<string, number | null>();
  /**
   * What this coordinator last said of each agent and has not written yet: connected (with the
   * protocol version agreed) or gone. Written together, one write at a time (`writeSoon`); a write is two
   * statements, the rows gone and then the rows here (`write`).
   */
  private unwritten = new Map<string, { protocolVersion: number | null } | typeof GONE>();
  /** The write the unwritten rows will go in, its callers waiting on it. */
  private nextWrite: { promise: Promise<void>; resolve(): void; reject(err: unknown): void } | undefined;
  /** A write on its way: the next waits for it, so an agent's rows are written in the order they were said. */
  private writing: Promise<void> | undefined;

  constructor(
    private readonly db: PostgresExecutor,
    readonly coordinatorId: string,
    private readonly staleMs: number,
  ) {}

  /** On start: this coordinator is a member, and holds no agent yet (rows of an earlier run of it are stale). */
  async join(): Promise<void> {
    await this.db.query(
      `INSERT INTO coordinators (id, started_at, heartbeat_at) VALUES ($1, now(), now())
       ON CONFLICT (id) DO UPDATE SET started_at = now(), heartbeat_at = now()`,
      [this.coordinatorId],
    );
    await this.db.query('DELETE FROM agent_connections WHERE coordinator_id = $1', [this.coordinatorId]);
    await this.refresh();
  }

  /** Says this coordinator is alive, and reads where every other agent is connected. */
  async heartbeat(): Promise<void> {
    await this.db.query('UPDATE coordinators SET heartbeat_at = now() WHERE id = $1', [this.coordinatorId]);
    // Rows a failed write left (see writeUnwritten) are written again.
    const retried = this.unwritten.size > 0 ? this.writeSoon() : undefined;
    await this.refresh();
    await retried;
  }

  /** Resolves once the agent's row says it is connected here (written with the others said meanwhile). */
  connected(agentId: string, protocolVersion: number | undefined): Promise<void> {
    this.elsewhere.delete(agentId);
    this.unwritten.set(agentId, { protocolVersion: protocolVersion ?? null });
    return this.writeSoon();
  }

  /** Only this coordinator's row goes: the agent may already be connected to another one. */
  disconnected(agentId: string): Promise<void> {
    this.unwritten.set(agentId, GONE);
    return this.writeSoon();
  }

  /**
   * The rows said in this turn of the event loop, or while the previous write was on its way, are
   * written together (`write`): a reconnect storm of N agents is a few statements, not N round trips
   * and commits.
   * One write at a time, and only an agent's last word in each: a quick disconnect and reconnect is
   * never written out of order (two statements on two pooled connections could land either way round,
   * and an agent connected here would have no row).
   */
  private writeSoon(): Promise<void> {
    if (this.nextWrite === undefined) {
      let resolve = () => {};
      let reject: (err: unknown) => void = () => {};
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.nextWrite = { promise, resolve, reject };
      const after = this.writing ?? new Promise<void>((res) => setImmediate(res));
      void after.then(() => this.writeUnwritten());
    }
    return this.nextWrite.promise;
  }

  private async writeUnwritten(): Promise<void> {
    const rows = this.unwritten;
    const waiting = this.nextWrite;
    this.unwritten = new Map();
    this.nextWrite = undefined;
    const here = [...rows].flatMap(([agentId, row]) => (row === GONE ? [] : [[agentId, row.protocolVersion] as const]));
    const gone = [...rows].flatMap(([agentId, row]) => (row === GONE ? [agentId] : []));
    const written = this.write(gone, here);
    const settled = written.then(
      () => {},
      () => {},
    );
    this.writing = settled;
    try {
      await written;
      waiting?.resolve();
    } catch (err) {
      // Not lost: each row not said again meanwhile goes with the next write, or at the next heartbeat.
      for (const [agentId, row] of rows) if (!this.unwritten.has(agentId)) this.unwritten.set(agentId, row);
      waiting?.reject(err);
    } finally {
      if (this.writing === settled) this.writing = undefined;
    }
  }

  /**
   * The rows gone, then the rows here: two statements, each its own transaction, each locking its
   * rows in the order of their key. Another member writes at the same time, and in a network reset
   * agents move both ways between two members: one statement deleting and then upserting would hold
   * its deleted rows while it waited on the other's upserts, and the other the reverse (a deadlock).
   */
  private async write(gone: readonly string[], here: readonly (readonly [string, number | null])[]): Promise<void> {
    if (gone.length > 0) {
      await this.db.query(
        `DELETE FROM agent_connections WHERE agent_id IN (
           SELECT agent_id FROM agent_connections WHERE agent_id = ANY($2::text[]) AND coordinator_id = $1
            ORDER BY agent_id FOR UPDATE)
           AND coordinator_id = $1`,
        [this.coordinatorId, gone],
      );
    }
    if (here.length > 0) {
      await this.db.query(
        `INSERT INTO agent_connections (agent_id, coordinator_id, protocol_version, connected_at)
         SELECT agent_id, $1, protocol_version, now()
           FROM unnest($2::text[], $3::integer[]) AS c(agent_id, protocol_version) ORDER BY agent_id
         ON CONFLICT (agent_id) DO UPDATE SET coordinator_id = $1, protocol_version = excluded.protocol_version,
           connected_at = now()`,
        [this.coordinatorId, here.map(([agentId]) => agentId), here.map(([, version]) => version)],
      );
    }
  }

  /** At an orderly shutdown: its agents will reconnect elsewhere, and it is no longer a member. */
  async leave(): Promise<void> {
    // What is still to be written would land after the DELETE below: let it go first.
    while (this.nextWrite !== undefined || this.writing !== undefined)
      await (this.nextWrite?.promise ?? this.writing)?.catch(() => {});
    await this.db.query('DELETE FROM agent_connections WHERE coordinator_id = $1', [this.coordinatorId]);
    await this.db.query('DELETE FROM coordinators WHERE id = $1', [this.coordinatorId]);
  }

  isOnlineElsewhere(agentId: string): boolean {
    return this.elsewhere.has(agentId);
  }

  protocolVersionElsewhere(agentId: string): number | undefined {
    return this.elsewhere.get(agentId) ?? undefined;
  }

  /** The members whose heartbeat is fresh, with how many agents each holds (for /v1/group and tests). */
  async members(): Promise<{ id: string; heartbeatAt: string; agents: number }[]> {
    const rows = await this.db.query<{ id: string; heartbeat_at: string; agents: number }>(
      `SELECT k.id, k.heartbeat_at, count(c.agent_id)::int AS agents
         FROM coordinators k LEFT JOIN agent_connections c ON c.coordinator_id = k.id
        WHERE k.heartbeat_at > now() - $1 * interval '1 millisecond'
        GROUP BY k.id, k.heartbeat_at ORDER BY k.id`,
      [this.staleMs],
    );
    return rows.map((row) => ({ id: row.id, heartbeatAt: row.heartbeat_at, agents: row.agents }));
  }

  /** Reads where every other agent is connected (each heartbeat does, and a dispatch that finds a host offline). */
  async refresh(): Promise<void> {
    const rows = await this.db.query<{ agent_id: string; protocol_version: number | null }>(
      `SELECT c.agent_id, c.protocol_version FROM agent_connections c
         JOIN coordinators k ON k.id = c.coordinator_id
        WHERE c.coordinator_id <> $1 AND k.heartbeat_at > now() - $2 * interval '1 millisecond'`,
      [this.coordinatorId, this.staleMs],
    );
    this.elsewhere = new Map(rows.map((row) => [row.agent_id, row.protocol_version]));
  }
}
