import {
  type JoinTokenColumns,
  type JoinTokenRecord,
  type JoinTokenRepository,
  joinTokenFromColumns,
} from '../join-token-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/** Join tokens on PostgreSQL: the twin of `JoinTokenRepository` (by the sha256 of their secret). */
export class PostgresJoinTokenRepository implements Public<JoinTokenRepository> {
  constructor(private readonly db: PostgresExecutor) {}

  async insert(token: JoinTokenRecord & { tokenSha256: string }): Promise<void> {
    await this.db.query(
      `INSERT INTO join_tokens (id, token_sha256, description, created_by, created_at, expires_at, max_uses, labels, host_id, allow_replace)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10)`,
      [
        token.id,
        token.tokenSha256,
        token.description,
        token.createdBy,
        token.createdAt,
        token.expiresAt,
        token.maxUses,
        JSON.stringify(token.labels),
        token.hostId,
        token.replace,
      ],
    );
  }

  async get(id: string): Promise<JoinTokenRecord | undefined> {
    const row = await this.db.one<JoinTokenColumns>('SELECT * FROM join_tokens WHERE id = $1', [id]);
    return row && joinTokenFromColumns(row);
  }

  async bySecretHash(tokenSha256: string): Promise<JoinTokenRecord | undefined> {
    const row = await this.db.one<JoinTokenColumns>('SELECT * FROM join_tokens WHERE token_sha256 = $1', [tokenSha256]);
    return row && joinTokenFromColumns(row);
  }

  async list(limit: number): Promise<JoinTokenRecord[]> {
    const rows = await this.db.query<JoinTokenColumns>(
      'SELECT * FROM join_tokens ORDER BY created_at DESC, id LIMIT $1',
      [limit],
    );
    return rows.map(joinTokenFromColumns);
  }

  /**
   * Claims one use at `at`; false when none is left, or the token was revoked or expired meanwhile
   * (checked and counted in one statement, as on SQLite: the row as committed last decides).
   */
  async use(id: string, at: string): Promise<boolean> {
    return await this.db.changedOne(
      `UPDATE join_tokens SET uses = uses + 1
       WHERE id = $1 AND uses < max_uses AND revoked_at IS NULL AND expires_at > $2 RETURNING id`,
      [id, at],
    );
  }

  async revoke(id: string, at: string): Promise<boolean> {
    return await this.db.changedOne(
      'UPDATE join_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id',
      [id, at],
    );
  }
}
