import { type Patch, type PatchSpec, patchContentDigest, patchSpecOf } from '@fleetpatch/shared';
import type { Db } from './database.js';
import { KeptReads } from './kept-reads.js';

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

/** How many patches each store keeps parsed: those of the rollouts running at once, and then some. */
export const PATCHES_KEPT = 64;

/** Patches are written once and never updated: a new fix is a new patch. */
export class PatchRepository {
  private readonly statements;
  /** Read at every burst of dispatches, a patch can carry a megabyte of content: kept once parsed. */
  private readonly kept = new KeptReads<string, Patch>(PATCHES_KEPT);

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        'INSERT INTO patches (id, spec, created_by, created_at, content_digest) VALUES (?, ?, ?, ?, ?)',
      ),
      byId: db.prepare('SELECT * FROM patches WHERE id = ?'),
      page: db.prepare('SELECT * FROM patches ORDER BY created_at DESC, id DESC LIMIT ?'),
      idsWithDigest: db.prepare('SELECT id FROM patches WHERE content_digest = ? ORDER BY created_at, id'),
      withoutDigest: db.prepare('SELECT * FROM patches WHERE content_digest IS NULL'),
      setDigest: db.prepare('UPDATE patches SET content_digest = ? WHERE id = ?'),
    };
  }

  async insert(patch: Patch): Promise<void> {
    const { id, createdBy, createdAt, contentDigest, ...spec } = patch;
    this.statements.insert.run(id, JSON.stringify(spec), createdBy, createdAt, contentDigest);
  }

  async get(id: string): Promise<Patch | undefined> {
    const kept = this.kept.get(id);
    if (kept !== undefined) return kept;
    const row = this.statements.byId.get(id) as PatchRow | undefined;
    return row && this.kept.keep(id, toPatch(row));
  }

  async list(limit: number): Promise<Patch[]> {
    return (this.statements.page.all(limit) as PatchRow[]).map(toPatch);
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

/** The content digest of a stored spec; null when it no longer parses (shared with the PostgreSQL twin). */
export function digestOf(stored: PatchSpec): string | null {
  try {
    return patchContentDigest(patchSpecOf(stored));
  } catch {
    return null;
  }
}
