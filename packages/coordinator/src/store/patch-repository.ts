import type { Patch, PatchSpec } from '@fleetpatch/shared';
import type { Db } from './database.js';

interface PatchRow {
  id: string;
  spec: string;
  created_by: string;
  created_at: string;
}

/** Patches are written once and never updated: a new fix is a new patch. */
export class PatchRepository {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare('INSERT INTO patches (id, spec, created_by, created_at) VALUES (?, ?, ?, ?)'),
      byId: db.prepare('SELECT * FROM patches WHERE id = ?'),
      page: db.prepare('SELECT * FROM patches ORDER BY created_at DESC, id DESC LIMIT ?'),
    };
  }

  insert(patch: Patch): void {
    const { id, createdBy, createdAt, ...spec } = patch;
    this.statements.insert.run(id, JSON.stringify(spec), createdBy, createdAt);
  }

  get(id: string): Patch | undefined {
    const row = this.statements.byId.get(id) as PatchRow | undefined;
    return row && toPatch(row);
  }

  list(limit: number): Patch[] {
    return (this.statements.page.all(limit) as PatchRow[]).map(toPatch);
  }
}

function toPatch(row: PatchRow): Patch {
  return { id: row.id, createdBy: row.created_by, createdAt: row.created_at, ...(JSON.parse(row.spec) as PatchSpec) };
}
