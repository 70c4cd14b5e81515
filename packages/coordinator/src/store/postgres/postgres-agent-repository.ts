import type { Facts } from '@fleetpatch/shared';
import {
  type AgentColumns,
  type AgentRecord,
  type AgentRepository,
  agentFromColumns,
  type NewAgentKey,
} from '../agent-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/** Known agents on PostgreSQL: the twin of `AgentRepository` (see it for what each method means). */
export class PostgresAgentRepository implements Public<AgentRepository> {
  constructor(private readonly db: PostgresExecutor) {}

  async enroll(agent: NewAgentKey, at: string): Promise<boolean> {
    // Labels are flat string maps, so jsonb's `||` lays the token's labels over the kept ones exactly
    // as SQLite's json_patch does. The WHERE is checked against the row as committed last: an
    // enrollment of this host by another coordinator since this one read it is not overwritten.
    return await this.db.changedOne(
      `INSERT INTO agents (id, public_key, labels, created_at, enrolled_at) VALUES ($1, $2, $3::jsonb, $4, $4)
       ON CONFLICT (id) DO UPDATE SET public_key = $2, labels = agents.labels || $3::jsonb, enrolled_at = $4,
         revoked_at = NULL, removed_at = NULL
       WHERE $5 OR (agents.enrolled_at IS NULL AND agents.revoked_at IS NULL)
       RETURNING id`,
      [agent.id, agent.publicKey, JSON.stringify(agent.labels), at, agent.mayReplace],
    );
  }

  async get(id: string): Promise<AgentRecord | undefined> {
    const row = await this.db.one<AgentColumns>('SELECT * FROM agents WHERE id = $1', [id]);
    return row && agentFromColumns(row);
  }

  async publicKeyOf(id: string): Promise<string | undefined> {
    const row = await this.db.one<{ public_key: string | null }>('SELECT public_key FROM agents WHERE id = $1', [id]);
    return row?.public_key ?? undefined;
  }

  async list(): Promise<AgentRecord[]> {
    return (await this.db.query<AgentColumns>('SELECT * FROM agents ORDER BY id')).map(agentFromColumns);
  }

  async recordHello(
    id: string,
    hello: { labels: Record<string, string>; facts: Facts; agentVersion: string },
    at: string,
  ): Promise<void> {
    await this.db.query(
      'UPDATE agents SET reported_labels = $2::jsonb, facts = $3::jsonb, agent_version = $4, last_seen_at = $5 WHERE id = $1',
      [id, JSON.stringify(hello.labels), JSON.stringify(hello.facts), hello.agentVersion, at],
    );
  }

  async revoke(id: string, at: string): Promise<boolean> {
    return await this.db.changedOne(
      'UPDATE agents SET public_key = NULL, revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id',
      [id, at],
    );
  }

  async remove(id: string, at: string): Promise<boolean> {
    return await this.db.changedOne(
      'UPDATE agents SET removed_at = $2 WHERE id = $1 AND removed_at IS NULL RETURNING id',
      [id, at],
    );
  }

  async recordSightings(sightings: readonly (readonly [id: string, at: string])[]): Promise<void> {
    if (sightings.length === 0) return;
    await this.db.query(
      `UPDATE agents AS a SET last_seen_at = s.at::timestamptz
         FROM unnest($1::text[], $2::text[]) AS s(id, at) WHERE a.id = s.id`,
      [sightings.map(([id]) => id), sightings.map(([, at]) => at)],
    );
  }
}
