import type { Statement, StatementSignature } from '@fleetpatch/shared';
import type { Public } from '../repositories.js';
import {
  type SignatureRecord,
  type SignatureRow,
  type StatementRecord,
  type StatementRepository,
  type StatementRow,
  type StatementScope,
  scopeText,
  toSignature,
  toStatement,
} from '../statement-repository.js';
import type { PostgresExecutor } from './postgres-executor.js';

const STATEMENT_COLUMNS = 'digest, rollout_id, kind, scope, json, created_at, used_at';
const SIGNATURE_COLUMNS = 'digest, key_id, public_key, signature, signer, role, at';

/**
 * The statements people signed, on PostgreSQL (statement-repository.ts is the reference). `json`
 * is text, not jsonb: what agents verify is the document as it was signed, byte for byte. "The
 * order they were written" is the `rowid` identity column, as SQLite's implicit rowid was.
 */
export class PostgresStatementRepository implements Public<StatementRepository> {
  constructor(private readonly executor: PostgresExecutor) {}

  async insert(record: Omit<StatementRecord, 'usedAt'>): Promise<void> {
    await this.executor.query(
      `INSERT INTO statements (digest, rollout_id, kind, scope, json, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        record.digest,
        record.rolloutId,
        record.statement.kind,
        scopeText(record.scope),
        JSON.stringify(record.statement),
        record.createdAt,
      ],
    );
  }

  async get(digest: string): Promise<StatementRecord | undefined> {
    const row = await this.executor.one<StatementRow>(`SELECT ${STATEMENT_COLUMNS} FROM statements WHERE digest = $1`, [
      digest,
    ]);
    return row && toStatement(row);
  }

  async apply(rolloutId: string): Promise<StatementRecord | undefined> {
    return (await this.ofKind(rolloutId, 'apply', 1))[0];
  }

  async reverts(rolloutId: string): Promise<StatementRecord[]> {
    return await this.ofKind(rolloutId, 'revert', null);
  }

  async pendingRevert(rolloutId: string, scope: StatementScope): Promise<StatementRecord | undefined> {
    const row = await this.executor.one<StatementRow>(
      `SELECT ${STATEMENT_COLUMNS} FROM statements
        WHERE rollout_id = $1 AND kind = 'revert' AND scope = $2 AND used_at IS NULL
        ORDER BY created_at DESC, rowid DESC LIMIT 1`,
      [rolloutId, scopeText(scope)],
    );
    return row && toStatement(row);
  }

  async revertCovering(rolloutId: string, hostId: string): Promise<StatementRecord | undefined> {
    const row = await this.executor.one<StatementRow>(
      `SELECT ${STATEMENT_COLUMNS} FROM statements
        WHERE rollout_id = $1 AND kind = 'revert' AND scope IN ('rollout', $2) AND used_at IS NOT NULL
        ORDER BY used_at DESC, rowid DESC LIMIT 1`,
      [rolloutId, scopeText({ kind: 'host', hostId })],
    );
    return row && toStatement(row);
  }

  async markUsed(digest: string, at: string): Promise<void> {
    await this.executor.query('UPDATE statements SET used_at = $1 WHERE digest = $2', [at, digest]);
  }

  async delete(digest: string): Promise<void> {
    // One statement, so that outside a transaction the signatures never go without their statement.
    await this.executor.query(
      `WITH gone AS (DELETE FROM statement_signatures WHERE digest = $1)
       DELETE FROM statements WHERE digest = $1`,
      [digest],
    );
  }

  async addSignature(record: SignatureRecord): Promise<void> {
    await this.executor.query(
      `INSERT INTO statement_signatures (${SIGNATURE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [record.digest, record.keyId, record.publicKey, record.signature, record.signer, record.role, record.at],
    );
  }

  async signatures(digest: string): Promise<SignatureRecord[]> {
    const rows = await this.executor.query<SignatureRow>(
      `SELECT ${SIGNATURE_COLUMNS} FROM statement_signatures WHERE digest = $1 ORDER BY at, rowid`,
      [digest],
    );
    return rows.map(toSignature);
  }

  async signed(record: StatementRecord): Promise<{ statement: Statement; signatures: StatementSignature[] }> {
    return {
      statement: record.statement,
      signatures: (await this.signatures(record.digest)).map(({ keyId, signature }) => ({ keyId, signature })),
    };
  }

  private async ofKind(rolloutId: string, kind: Statement['kind'], limit: number | null): Promise<StatementRecord[]> {
    const rows = await this.executor.query<StatementRow>(
      `SELECT ${STATEMENT_COLUMNS} FROM statements WHERE rollout_id = $1 AND kind = $2
        ORDER BY created_at, rowid LIMIT $3`,
      [rolloutId, kind, limit],
    );
    return rows.map(toStatement);
  }
}
