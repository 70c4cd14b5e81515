import {
  type Patch,
  type PatchSpec,
  type PatchSummary,
  patchContentDigest,
  patchSpecOf,
  patchSummaryOf,
} from '@fleetpatch/shared';
import type { Db } from './database.js';
import { KeptReads } from './kept-reads.js';

/** Patches read at once while summaries are filled in (`backfillSummaries`): each may be a megabyte. */
export const BACKFILL_PAGE = 100;

/** A patches row with its spec parsed, as both stores read it. */
export interface PatchColumns {
  id: string;
  spec: PatchSpec & Pick<Patch, 'record'>;
  created_by: string;
  created_at: string;
  content_digest: string | null;
}

/** SQLite holds the spec as text. */
type PatchRow = Omit<PatchColumns, 'spec'> & { spec: string };

/** A patch_summaries row, as both stores read it: the key columns, and the rest of the summary. */
export interface PatchSummaryColumns {
  id: string;
  created_at: string;
  summary: StoredSummary;
}

/** What the summary column holds: the summary less what its own columns say. */
type StoredSummary = Omit<PatchSummary, 'id' | 'createdAt'>;

/** SQLite holds the summary as text. */
type SummaryRow = Omit<PatchSummaryColumns, 'summary'> & { summary: string };

/** How many patches each store keeps parsed: those of the rollouts running at once, and then some. */
export const PATCHES_KEPT = 64;

/** Patches are written once and never updated: a new fix is a new patch. */
export class PatchRepository {
  private readonly statements;
  /** Read at every burst of dispatches, a patch can carry a megabyte of content: kept once parsed. */
  private readonly kept = new KeptReads<string, Patch>(PATCHES_KEPT);
  private readonly insertWithSummary: (patch: Patch) => void;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        'INSERT INTO patches (id, spec, created_by, created_at, content_digest) VALUES (?, ?, ?, ?, ?)',
      ),
      insertSummary: db.prepare('INSERT INTO patch_summaries (id, created_at, summary) VALUES (?, ?, ?)'),
      byId: db.prepare('SELECT * FROM patches WHERE id = ?'),
      // Not patches: its rows hold the content, and SQLite reads through a row's spec to the columns after it.
      page: db.prepare('SELECT id, created_at, summary FROM patch_summaries ORDER BY created_at DESC, id DESC LIMIT ?'),
      summaryById: db.prepare('SELECT id, created_at, summary FROM patch_summaries WHERE id = ?'),
      idsWithDigest: db.prepare('SELECT id FROM patches WHERE content_digest = ? ORDER BY created_at, id'),
      withoutDigest: db.prepare('SELECT * FROM patches WHERE content_digest IS NULL'),
      setDigest: db.prepare('UPDATE patches SET content_digest = ? WHERE id = ?'),
      withoutSummary: db.prepare(
        `SELECT * FROM patches WHERE id > ? AND NOT EXISTS (SELECT 1 FROM patch_summaries s WHERE s.id = patches.id)
         ORDER BY id LIMIT ${BACKFILL_PAGE}`,
      ),
    };
    // A patch is never without its summary, in a transaction or not.
    this.insertWithSummary = db.transaction((patch: Patch) => {
      const { id, createdBy, createdAt, contentDigest, ...spec } = patch;
      this.statements.insert.run(id, JSON.stringify(spec), createdBy, createdAt, contentDigest);
      this.statements.insertSummary.run(id, createdAt, JSON.stringify(storedSummaryOf(patch)));
    });
  }

  async insert(patch: Patch): Promise<void> {
    this.insertWithSummary(patch);
  }

  async get(id: string): Promise<Patch | undefined> {
    const kept = this.kept.get(id);
    if (kept !== undefined) return kept;
    const row = this.statements.byId.get(id) as PatchRow | undefined;
    return row && this.kept.keep(id, toPatch(row));
  }

  /** The newest `limit` patches' summaries, newest first: no content is read. */
  async list(limit: number): Promise<PatchSummary[]> {
    return (this.statements.page.all(limit) as SummaryRow[]).map(toSummary);
  }

  /** One patch's summary, its content unread; undefined for an unknown id. */
  async summary(id: string): Promise<PatchSummary | undefined> {
    const row = this.statements.summaryById.get(id) as SummaryRow | undefined;
    return row && toSummary(row);
  }

  /** Every patch with this content digest (the same change, whatever its prose), oldest first. */
  async idsWithDigest(digest: string): Promise<string[]> {
    return (this.statements.idsWithDigest.all(digest) as { id: string }[]).map((row) => row.id);
  }

  /**
   * Patches stored before content digests existed (migration 11) get theirs; a no-op afterwards. A
   * row whose spec no longer parses keeps none (it matches no other patch) rather than stop the start.
   */
  async backfillDigests(): Promise<void> {
    for (const row of this.statements.withoutDigest.all() as PatchRow[]) {
      const digest = digestOf(JSON.parse(row.spec) as PatchSpec);
      if (digest !== null) this.statements.setDigest.run(digest, row.id);
    }
  }

  /**
   * Patches stored before summaries existed (migration 15) get theirs; a no-op afterwards. Run after
   * `backfillDigests`: a summary carries the digest.
   */
  async backfillSummaries(): Promise<void> {
    // A page at a time, by id: a store of large patches is never read into memory whole.
    for (let after = ''; ; ) {
      const rows = this.statements.withoutSummary.all(after) as PatchRow[];
      for (const row of rows) {
        const summary = summaryOfStored(toPatch(row));
        if (summary !== null) this.statements.insertSummary.run(row.id, row.created_at, JSON.stringify(summary));
      }
      const last = rows.at(-1);
      if (last === undefined) return;
      after = last.id;
    }
  }
}

function toSummary(row: SummaryRow): PatchSummary {
  return patchSummaryFromColumns({ ...row, summary: JSON.parse(row.summary) as StoredSummary });
}

function toPatch(row: PatchRow): Patch {
  return patchFromColumns({ ...row, spec: JSON.parse(row.spec) as PatchColumns['spec'] });
}

export function patchFromColumns(row: PatchColumns): Patch {
  return {
    id: row.id,
    createdBy: row.created_by,
    createdAt: row.created_at,
    ...row.spec,
    contentDigest: row.content_digest ?? digestOf(row.spec) ?? '',
  };
}

/** What a patch's summary column holds. */
export function storedSummaryOf(patch: Patch): StoredSummary {
  const { id: _id, createdAt: _createdAt, ...summary } = patchSummaryOf(patch);
  return summary;
}

/**
 * The stored summary of a patch read back from its row; null when its spec no longer holds a change
 * to summarize (shared with the PostgreSQL twin). Such a patch stays out of lists rather than stop
 * the start; `GET /v1/patches/:id` still answers it.
 */
export function summaryOfStored(patch: Patch): StoredSummary | null {
  try {
    return storedSummaryOf(patch);
  } catch {
    return null;
  }
}

export function patchSummaryFromColumns(row: PatchSummaryColumns): PatchSummary {
  return { id: row.id, createdAt: row.created_at, ...row.summary };
}

/** The content digest of a stored spec; null when it no longer parses (shared with the PostgreSQL twin). */
export function digestOf(stored: PatchSpec): string | null {
  try {
    return patchContentDigest(patchSpecOf(stored));
  } catch {
    return null;
  }
}
