import type { Patch } from '@fleetpatch/shared';
import { KeptReads } from '../kept-reads.js';
import {
  digestOf,
  PATCHES_KEPT,
  type PatchColumns,
  type PatchRepository,
  patchFromColumns,
} from '../patch-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/** Patches on PostgreSQL: the twin of `PatchRepository`, written once and never updated. */
export class PostgresPatchRepository implements Public<PatchRepository> {
  private readonly kept = new KeptReads<string, Patch>(PATCHES_KEPT);

  constructor(private readonly db: PostgresExecutor) {}

  async insert(patch: Patch): Promise<void> {
    const { id, createdBy, createdAt, contentDigest, ...spec } = patch;
    await this.db.query(
      'INSERT INTO patches (id, spec, created_by, created_at, content_digest) VALUES ($1, $2::jsonb, $3, $4, $5)',
      [id, JSON.stringify(spec), createdBy, createdAt, contentDigest],
    );
  }

  async get(id: string): Promise<Patch | undefined> {
    const kept = this.kept.get(id);
    if (kept !== undefined) return kept;
    const row = await this.db.one<PatchColumns>('SELECT * FROM patches WHERE id = $1', [id]);
    return row && this.kept.keep(id, patchFromColumns(row));
  }

  async list(limit: number): Promise<Patch[]> {
    const rows = await this.db.query<PatchColumns>('SELECT * FROM patches ORDER BY created_at DESC, id DESC LIMIT $1', [
      limit,
    ]);
    return rows.map(patchFromColumns);
  }

  async idsWithDigest(digest: string): Promise<string[]> {
    const rows = await this.db.query<{ id: string }>(
      'SELECT id FROM patches WHERE content_digest = $1 ORDER BY created_at, id',
      [digest],
    );
    return rows.map((row) => row.id);
  }

  /**
   * Rows copied by migrate-store from a SQLite store older than content digests get theirs, as
   * `PatchRepository.backfillDigests` does; a no-op afterwards.
   */
  async backfillDigests(): Promise<void> {
    for (const row of await this.db.query<PatchColumns>('SELECT * FROM patches WHERE content_digest IS NULL')) {
      const digest = digestOf(row.spec);
      if (digest !== null)
        await this.db.query('UPDATE patches SET content_digest = $1 WHERE id = $2', [digest, row.id]);
    }
  }
}
