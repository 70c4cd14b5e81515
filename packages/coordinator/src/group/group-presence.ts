import type { PostgresExecutor } from '../store/postgres/postgres-executor.js';

/**
 * Which agents are connected to which coordinator of the group. Each coordinator writes its own
 * agents' rows and a heartbeat; a row counts only while its coordinator's heartbeat is fresh, so the
 * agents of a coordinator that died stop counting as online within `staleMs`, without anyone having
 * to clean up after it. Read every heartbeat into memory: the engine asks `isOnline` synchronously.
 */
export class GroupPresence {
  /** Agents connected to other coordinators of the group → the protocol version each agreed there. */
  private elsewhere = new Map<string, number | null>();

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
    await this.refresh();
  }

  async connected(agentId: string, protocolVersion: number | undefined): Promise<void> {
    await this.db.query(
      `INSERT INTO agent_connections (agent_id, coordinator_id, protocol_version, connected_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (agent_id) DO UPDATE SET coordinator_id = $2, protocol_version = $3, connected_at = now()`,
      [agentId, this.coordinatorId, protocolVersion ?? null],
    );
    this.elsewhere.delete(agentId);
  }

  /** Only this coordinator's row: the agent may already be connected to another one. */
  async disconnected(agentId: string): Promise<void> {
    await this.db.query('DELETE FROM agent_connections WHERE agent_id = $1 AND coordinator_id = $2', [
      agentId,
      this.coordinatorId,
    ]);
  }

  /** At an orderly shutdown: its agents will reconnect elsewhere, and it is no longer a member. */
  async leave(): Promise<void> {
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
