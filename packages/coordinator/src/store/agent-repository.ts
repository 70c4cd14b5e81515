import type { AgentView, Facts } from '@fleetpatch/shared';
import type { Db } from './database.js';

/** A registered agent as stored: the API's view of it less `online`, which only the hub knows. */
export type AgentRecord = Omit<AgentView, 'online' | 'removedAt'> & { removedAt: string | null };

/** An agents row with its JSON parsed: what both stores' repositories turn into a record. */
export interface AgentColumns {
  id: string;
  public_key: string | null;
  labels: Record<string, string>;
  reported_labels: Record<string, string>;
  facts: Facts | null;
  agent_version: string | null;
  last_seen_at: string | null;
  created_at: string;
  enrolled_at: string | null;
  revoked_at: string | null;
  removed_at: string | null;
}

/** SQLite holds the JSON columns as text. */
type AgentRow = Omit<AgentColumns, 'labels' | 'reported_labels' | 'facts'> & {
  labels: string;
  reported_labels: string;
  facts: string | null;
};

function toRecord(row: AgentRow): AgentRecord {
  return agentFromColumns({
    ...row,
    labels: JSON.parse(row.labels) as Record<string, string>,
    reported_labels: JSON.parse(row.reported_labels) as Record<string, string>,
    facts: row.facts === null ? null : (JSON.parse(row.facts) as Facts),
  });
}

export function agentFromColumns(row: AgentColumns): AgentRecord {
  return {
    id: row.id,
    // Kept apart: targets match admin labels unless a rollout asks for reported ones.
    labels: row.labels,
    reportedLabels: row.reported_labels,
    facts: row.facts,
    agentVersion: row.agent_version,
    lastSeenAt: row.last_seen_at,
    createdAt: row.created_at,
    enrolledAt: row.enrolled_at,
    revokedAt: row.revoked_at,
    removedAt: row.removed_at,
  };
}

/** A key to enroll a host with, and whether it may take the place of a key the host has held. */
export interface NewAgentKey {
  id: string;
  publicKey: string;
  labels: Record<string, string>;
  /**
   * False: only a host that has never held a key may take it (a new one, or one registered before
   * enrollment existed); a host enrolled meanwhile, by another coordinator of the group, is not
   * overwritten, and `enroll` answers false.
   */
  mayReplace: boolean;
}

/**
 * Known agents. Each holds at most one credential: the ed25519 public key it enrolled with (nothing
 * secret is stored). Revoking clears the key but keeps the row and its history.
 */
export class AgentRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      enroll: db.prepare(
        `INSERT INTO agents (id, public_key, labels, created_at, enrolled_at) VALUES (@id, @publicKey, @labels, @at, @at)
         ON CONFLICT (id) DO UPDATE SET public_key = @publicKey, labels = json_patch(labels, @labels), enrolled_at = @at, revoked_at = NULL, removed_at = NULL
         WHERE @mayReplace = 1 OR (enrolled_at IS NULL AND revoked_at IS NULL)`,
      ),
      byId: db.prepare('SELECT * FROM agents WHERE id = ?'),
      publicKey: db.prepare('SELECT public_key FROM agents WHERE id = ?').pluck(),
      revoke: db.prepare('UPDATE agents SET public_key = NULL, revoked_at = @at WHERE id = @id AND revoked_at IS NULL'),
      remove: db.prepare('UPDATE agents SET removed_at = @at WHERE id = @id AND removed_at IS NULL'),
      all: db.prepare('SELECT * FROM agents ORDER BY id'),
      hello: db.prepare(
        'UPDATE agents SET reported_labels = @labels, facts = @facts, agent_version = @agentVersion, last_seen_at = @at WHERE id = @id',
      ),
      seen: db.prepare('UPDATE agents SET last_seen_at = @at WHERE id = @id'),
    };
  }

  /**
   * Creates the agent, or gives an existing one a new key (the old one stops working at once). A
   * re-enrolled host keeps its fixed labels; the join token's labels are laid over them.
   */
  async enroll(agent: NewAgentKey, at: string): Promise<boolean> {
    // A literal, not a spread: see HostRunRepository.transition (every new agent enrolls once).
    return (
      this.statements.enroll.run({
        id: agent.id,
        publicKey: agent.publicKey,
        labels: JSON.stringify(agent.labels),
        at,
        mayReplace: agent.mayReplace ? 1 : 0,
      }).changes === 1
    );
  }

  async get(id: string): Promise<AgentRecord | undefined> {
    const row = this.statements.byId.get(id) as AgentRow | undefined;
    return row && toRecord(row);
  }

  /** The key this agent proves possession of on connect; undefined when unknown or revoked. */
  async publicKeyOf(id: string): Promise<string | undefined> {
    return (this.statements.publicKey.get(id) as string | null | undefined) ?? undefined;
  }

  async list(): Promise<AgentRecord[]> {
    return (this.statements.all.all() as AgentRow[]).map(toRecord);
  }

  async recordHello(
    id: string,
    hello: { labels: Record<string, string>; facts: Facts; agentVersion: string },
    at: string,
  ): Promise<void> {
    this.statements.hello.run({
      id,
      labels: JSON.stringify(hello.labels),
      facts: JSON.stringify(hello.facts),
      agentVersion: hello.agentVersion,
      at,
    });
  }

  /** False when it was revoked already (by another coordinator since it was read, say). */
  async revoke(id: string, at: string): Promise<boolean> {
    return this.statements.revoke.run({ id, at }).changes === 1;
  }

  /**
   * Takes the agent out of the fleet (its key is revoked separately); the row and its history stay.
   * False when it was removed already.
   */
  async remove(id: string, at: string): Promise<boolean> {
    return this.statements.remove.run({ id, at }).changes === 1;
  }

  /** When each agent `[id, at]` was last seen (one statement on PostgreSQL; here, a loop of the prepared one). */
  async recordSightings(sightings: readonly (readonly [id: string, at: string])[]): Promise<void> {
    for (const [id, at] of sightings) this.statements.seen.run({ id, at });
  }
}
