import type { SignerRole, Statement, StatementSignature } from '@fleetpatch/shared';
import type { Db } from './database.js';

/** What a statement signs for: the whole rollout (its apply, or a revert of all of it), or one host's revert. */
export type StatementScope = { kind: 'rollout' } | { kind: 'host'; hostId: string };

export const ROLLOUT_SCOPE: StatementScope = { kind: 'rollout' };

export interface StatementRecord {
  digest: string;
  rolloutId: string;
  scope: StatementScope;
  statement: Statement;
  createdAt: string;
  /** Revert statements: when the revert it allowed was started; null while it collects signatures. */
  usedAt: string | null;
}

export interface SignatureRecord {
  digest: string;
  keyId: string;
  publicKey: string;
  signature: string;
  /** The API token that posted it. */
  signer: string;
  role: SignerRole;
  at: string;
}

export interface StatementRow {
  digest: string;
  rollout_id: string;
  kind: string;
  scope: string;
  json: string;
  created_at: string;
  used_at: string | null;
}

export interface SignatureRow {
  digest: string;
  key_id: string;
  public_key: string;
  signature: string;
  signer: string;
  role: string;
  at: string;
}

export const scopeText = (scope: StatementScope) => (scope.kind === 'rollout' ? 'rollout' : `host:${scope.hostId}`);

function toScope(text: string): StatementScope {
  return text.startsWith('host:') ? { kind: 'host', hostId: text.slice('host:'.length) } : ROLLOUT_SCOPE;
}

export function toStatement(row: StatementRow): StatementRecord {
  return {
    digest: row.digest,
    rolloutId: row.rollout_id,
    scope: toScope(row.scope),
    statement: JSON.parse(row.json) as Statement,
    createdAt: row.created_at,
    usedAt: row.used_at,
  };
}

export function toSignature(row: SignatureRow): SignatureRecord {
  return {
    digest: row.digest,
    keyId: row.key_id,
    publicKey: row.public_key,
    signature: row.signature,
    signer: row.signer,
    role: row.role as SignerRole,
    at: row.at,
  };
}

/**
 * The statements people signed for rollouts, and their signatures. Stored as the coordinator
 * received them (zod-parsed) and forwarded untouched: agents verify them, so nothing here is
 * trusted by anyone but the coordinator's own bookkeeping.
 */
export class StatementRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO statements (digest, rollout_id, kind, scope, json, created_at)
         VALUES (@digest, @rolloutId, @kind, @scope, @json, @at)`,
      ),
      byDigest: db.prepare('SELECT * FROM statements WHERE digest = ?'),
      ofKind: db.prepare('SELECT * FROM statements WHERE rollout_id = ? AND kind = ? ORDER BY created_at, rowid'),
      pending: db.prepare(
        `SELECT * FROM statements WHERE rollout_id = ? AND kind = 'revert' AND scope = ? AND used_at IS NULL
         ORDER BY created_at DESC, rowid DESC LIMIT 1`,
      ),
      covering: db.prepare(
        `SELECT * FROM statements WHERE rollout_id = ? AND kind = 'revert' AND scope IN ('rollout', ?)
           AND used_at IS NOT NULL
         ORDER BY used_at DESC, rowid DESC LIMIT 1`,
      ),
      markUsed: db.prepare('UPDATE statements SET used_at = ? WHERE digest = ?'),
      deleteSignatures: db.prepare('DELETE FROM statement_signatures WHERE digest = ?'),
      delete: db.prepare('DELETE FROM statements WHERE digest = ?'),
      addSignature: db.prepare(
        `INSERT INTO statement_signatures (digest, key_id, public_key, signature, signer, role, at)
         VALUES (@digest, @keyId, @publicKey, @signature, @signer, @role, @at)`,
      ),
      signatures: db.prepare('SELECT * FROM statement_signatures WHERE digest = ? ORDER BY at, rowid'),
    };
  }

  async insert(record: Omit<StatementRecord, 'usedAt'>): Promise<void> {
    this.statements.insert.run({
      digest: record.digest,
      rolloutId: record.rolloutId,
      kind: record.statement.kind,
      scope: scopeText(record.scope),
      json: JSON.stringify(record.statement),
      at: record.createdAt,
    });
  }

  async get(digest: string): Promise<StatementRecord | undefined> {
    const row = this.statements.byDigest.get(digest) as StatementRow | undefined;
    return row && toStatement(row);
  }

  /** The rollout's apply statement: what makes it a signed rollout. */
  async apply(rolloutId: string): Promise<StatementRecord | undefined> {
    const row = this.statements.ofKind.get(rolloutId, 'apply') as StatementRow | undefined;
    return row && toStatement(row);
  }

  async reverts(rolloutId: string): Promise<StatementRecord[]> {
    return (this.statements.ofKind.all(rolloutId, 'revert') as StatementRow[]).map(toStatement);
  }

  /** The newest revert statement of this scope not used yet (it may have expired: the caller judges). */
  async pendingRevert(rolloutId: string, scope: StatementScope): Promise<StatementRecord | undefined> {
    const row = this.statements.pending.get(rolloutId, scopeText(scope)) as StatementRow | undefined;
    return row && toStatement(row);
  }

  /** The revert statement the latest revert of this host was started under: the rollout's, or the host's own. */
  async revertCovering(rolloutId: string, hostId: string): Promise<StatementRecord | undefined> {
    const row = this.statements.covering.get(rolloutId, scopeText({ kind: 'host', hostId })) as
      | StatementRow
      | undefined;
    return row && toStatement(row);
  }

  async markUsed(digest: string, at: string): Promise<void> {
    this.statements.markUsed.run(at, digest);
  }

  /** Removes a statement and its signatures (a draft's apply statement, replaced by a new one). */
  async delete(digest: string): Promise<void> {
    this.statements.deleteSignatures.run(digest);
    this.statements.delete.run(digest);
  }

  async addSignature(record: SignatureRecord): Promise<void> {
    this.statements.addSignature.run(record);
  }

  async signatures(digest: string): Promise<SignatureRecord[]> {
    return (this.statements.signatures.all(digest) as SignatureRow[]).map(toSignature);
  }

  /** The statement and its signatures as an order carries them (`signed` on order.apply / order.revert). */
  async signed(record: StatementRecord): Promise<{ statement: Statement; signatures: StatementSignature[] }> {
    return {
      statement: record.statement,
      signatures: (await this.signatures(record.digest)).map(({ keyId, signature }) => ({ keyId, signature })),
    };
  }
}
