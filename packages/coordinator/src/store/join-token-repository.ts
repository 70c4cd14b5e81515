import type { JoinTokenView } from '@fleetpatch/shared';
import type { Db } from './database.js';

/** A join token as stored: its view less the state, which depends on the time it is read. */
export type JoinTokenRecord = Omit<JoinTokenView, 'state'>;

/** A join_tokens row with its JSON parsed and its flag a boolean, as both stores read it. */
export interface JoinTokenColumns {
  id: string;
  description: string | null;
  created_by: string;
  created_at: string;
  expires_at: string;
  max_uses: number;
  uses: number;
  labels: Record<string, string>;
  host_id: string | null;
  allow_replace: boolean;
  revoked_at: string | null;
}

/** SQLite holds labels as text and the flag as 0/1. */
type JoinTokenRow = Omit<JoinTokenColumns, 'labels' | 'allow_replace'> & { labels: string; allow_replace: number };

function toRecord(row: JoinTokenRow): JoinTokenRecord {
  return joinTokenFromColumns({
    ...row,
    labels: JSON.parse(row.labels) as Record<string, string>,
    allow_replace: row.allow_replace === 1,
  });
}

export function joinTokenFromColumns(row: JoinTokenColumns): JoinTokenRecord {
  return {
    id: row.id,
    description: row.description,
    createdBy: row.created_by,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    maxUses: row.max_uses,
    uses: row.uses,
    labels: row.labels,
    hostId: row.host_id,
    replace: row.allow_replace,
    revokedAt: row.revoked_at,
  };
}

/** What a join token is good for at `now` (ISO time). */
export function joinTokenState(token: JoinTokenRecord, now: string): JoinTokenView['state'] {
  if (token.revokedAt !== null) return 'revoked';
  if (token.uses >= token.maxUses) return 'used_up';
  if (token.expiresAt <= now) return 'expired';
  return 'active';
}

/** Join tokens, stored by the sha256 of their secret: the secret itself is shown once and never kept. */
export class JoinTokenRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO join_tokens (id, token_sha256, description, created_by, created_at, expires_at, max_uses, labels, host_id, allow_replace)
         VALUES (@id, @tokenSha256, @description, @createdBy, @createdAt, @expiresAt, @maxUses, @labels, @hostId, @replace)`,
      ),
      byId: db.prepare('SELECT * FROM join_tokens WHERE id = ?'),
      bySecret: db.prepare('SELECT * FROM join_tokens WHERE token_sha256 = ?'),
      all: db.prepare('SELECT * FROM join_tokens ORDER BY created_at DESC, id LIMIT ?'),
      use: db.prepare(
        'UPDATE join_tokens SET uses = uses + 1 WHERE id = @id AND uses < max_uses AND revoked_at IS NULL AND expires_at > @at',
      ),
      revoke: db.prepare('UPDATE join_tokens SET revoked_at = @at WHERE id = @id AND revoked_at IS NULL'),
    };
  }

  async insert(token: JoinTokenRecord & { tokenSha256: string }): Promise<void> {
    this.statements.insert.run({
      ...token,
      labels: JSON.stringify(token.labels),
      replace: token.replace ? 1 : 0,
    });
  }

  async get(id: string): Promise<JoinTokenRecord | undefined> {
    const row = this.statements.byId.get(id) as JoinTokenRow | undefined;
    return row && toRecord(row);
  }

  async bySecretHash(tokenSha256: string): Promise<JoinTokenRecord | undefined> {
    const row = this.statements.bySecret.get(tokenSha256) as JoinTokenRow | undefined;
    return row && toRecord(row);
  }

  async list(limit: number): Promise<JoinTokenRecord[]> {
    return (this.statements.all.all(limit) as JoinTokenRow[]).map(toRecord);
  }

  /**
   * Claims one use at `at`; false when none is left, or the token was revoked or has expired (checked
   * and counted in one statement: the row as committed last decides, whatever an earlier read said).
   */
  async use(id: string, at: string): Promise<boolean> {
    return this.statements.use.run({ id, at }).changes === 1;
  }

  /** False when it was already revoked. */
  async revoke(id: string, at: string): Promise<boolean> {
    return this.statements.revoke.run({ id, at }).changes === 1;
  }
}
