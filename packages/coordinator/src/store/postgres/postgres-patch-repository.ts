import type { Patch, PatchSummary } from '@fleetpatch/shared';
import { KeptReads } from '../kept-reads.js';
import {
  BACKFILL_PAGE,
  digestOf,
  PATCHES_KEPT,
  type PatchColumns,
  type PatchRepository,
  type PatchSummaryColumns,
  patchFromColumns,
  patchSummaryFromColumns,
  storedSummaryOf,
  summaryOfStored,
} from '../patch-repository.js';
import type { Public } from '../repositories.js';
import type { PostgresExecutor } from './postgres-executor.js';

/** Patches on PostgreSQL: the twin of `PatchRepository`, written once and never updated. */
export class PostgresPatchRepository implements Public<PatchRepository> {
  private readonly kept = new KeptReads<string, Patch>(PATCHES_KEPT);

  constructor(private readonly db: PostgresExecutor) {}

  /** The patch and its summary in one statement: a patch is never without its summary. */
  async insert(patch: Patch): Promise<void> {
    const { id, createdBy, createdAt, contentDigest, ...spec } = patch;
    await this.db.query(
      `WITH patch AS (
         INSERT INTO patches (id, spec, created_by, created_at, content_digest) VALUES ($1, $2::jsonb, $3, $4, $5)
         RETURNING id, created_at
       )
       INSERT INTO patch_summaries (id, created_at, summary) SELECT id, created_at, $6::jsonb FROM patch`,
      [id, JSON.stringify(spec), createdBy, createdAt, contentDigest, JSON.stringify(storedSummaryOf(patch))],
    );
  }

  async get(id: string): Promise<Patch | undefined> {
    const kept = this.kept.get(id);
    if (kept !== undefined) return kept;
    const row = await this.db.one<PatchColumns>('SELECT * FROM patches WHERE id = $1', [id]);
    return row && this.kept.keep(id, patchFromColumns(row));
  }

  /** The newest `limit` patches' summaries, newest first: the spec, and its content, stays unread. */
  async list(limit: number): Promise<PatchSummary[]> {
    const rows = await this.db.query<PatchSummaryColumns>(
      'SELECT id, created_at, summary FROM patch_summaries ORDER BY created_at DESC, id DESC LIMIT $1',
      [limit],
    );
    return rows.map(patchSummaryFromColumns);
  }

  async summary(id: string): Promise<PatchSummary | undefined> {
    const row = await this.db.one<PatchSummaryColumns>(
      'SELECT id, created_at, summary FROM patch_summaries WHERE id = $1',
      [id],
    );
    return row && patchSummaryFromColumns(row);
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

  /** Rows copied or stored before summaries existed get theirs, as `PatchRepository.backfillSummaries` does. */
  async backfillSummaries(): Promise<void> {
    // A page at a time, by id: a store of large patches is never read into memory whole.
    for (let after = ''; ; ) {
      const rows = await this.db.query<PatchColumns>(
        `SELECT * FROM patches WHERE id > $1 AND NOT EXISTS (SELECT 1 FROM patch_summaries s WHERE s.id = patches.id)
         ORDER BY id LIMIT ${BACKFILL_PAGE}`,
        [after],
      );
      const last = rows.at(-1);
      if (last === undefined) return;
      after = last.id;
      await this.fillSummaries(rows);
    }
  }

  private async fillSummaries(rows: readonly PatchColumns[]): Promise<void> {
    for (const row of rows) {
      const summary = summaryOfStored(patchFromColumns(row));
      if (summary !== null) {
        // Another coordinator of the group may be filling the same rows as it starts.
        await this.db.query(
          'INSERT INTO patch_summaries (id, created_at, summary) VALUES ($1, $2, $3::jsonb) ON CONFLICT (id) DO NOTHING',
          [row.id, row.created_at, JSON.stringify(summary)],
        );
      }
    }
  }
}
