import type { AgentView, Facts } from '@fleetpatch/shared';
import type { Db } from './database.js';

/** A registered agent as stored: the API's view of it less `online`, which only the hub knows. */
export type AgentRecord = Omit<AgentView, 'online'>;

interface AgentRow {
  id: string;
  labels: string;
  reported_labels: string;
  facts: string | null;
  agent_version: string | null;
  last_seen_at: string | null;
  created_at: string;
}

function toRecord(row: AgentRow): AgentRecord {
  return {
    id: row.id,
    labels: {
      ...(JSON.parse(row.reported_labels) as Record<string, string>),
      ...(JSON.parse(row.labels) as Record<string, string>),
    },
    facts: row.facts === null ? null : (JSON.parse(row.facts) as Facts),
    agentVersion: row.agent_version,
    lastSeenAt: row.last_seen_at,
    createdAt: row.created_at,
  };
}

/** Registered agents. Only the sha256 of each agent's token is stored. */
export class AgentRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        'INSERT INTO agents (id, token_sha256, labels, created_at) VALUES (@id, @tokenSha256, @labels, @createdAt)',
      ),
      byId: db.prepare('SELECT * FROM agents WHERE id = ?'),
      byToken: db.prepare('SELECT id FROM agents WHERE token_sha256 = ?'),
      all: db.prepare('SELECT * FROM agents ORDER BY id'),
      hello: db.prepare(
        'UPDATE agents SET reported_labels = @labels, facts = @facts, agent_version = @agentVersion, last_seen_at = @at WHERE id = @id',
      ),
      seen: db.prepare('UPDATE agents SET last_seen_at = @at WHERE id = @id'),
      token: db.prepare('UPDATE agents SET token_sha256 = @tokenSha256 WHERE id = @id'),
    };
  }

  insert(agent: { id: string; tokenSha256: string; labels: Record<string, string>; createdAt: string }): void {
    this.statements.insert.run({ ...agent, labels: JSON.stringify(agent.labels) });
  }

  get(id: string): AgentRecord | undefined {
    const row = this.statements.byId.get(id) as AgentRow | undefined;
    return row && toRecord(row);
  }

  idForTokenHash(tokenSha256: string): string | undefined {
    return (this.statements.byToken.get(tokenSha256) as { id: string } | undefined)?.id;
  }

  list(): AgentRecord[] {
    return (this.statements.all.all() as AgentRow[]).map(toRecord);
  }

  recordHello(
    id: string,
    hello: { labels: Record<string, string>; facts: Facts; agentVersion: string },
    at: string,
  ): void {
    this.statements.hello.run({
      id,
      labels: JSON.stringify(hello.labels),
      facts: JSON.stringify(hello.facts),
      agentVersion: hello.agentVersion,
      at,
    });
  }

  /** The old token stops working at once: only the new hash is kept. */
  replaceToken(id: string, tokenSha256: string): void {
    this.statements.token.run({ id, tokenSha256 });
  }

  recordSeen(id: string, at: string): void {
    this.statements.seen.run({ id, at });
  }
}
