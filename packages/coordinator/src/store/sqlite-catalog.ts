import type { Db } from './database.js';

export interface SqliteColumn {
  readonly name: string;
  /** As declared (`TEXT`, `INTEGER`, `REAL`): SQLite keeps any value in any column regardless. */
  readonly declaredType: string;
  /**
   * NOT NULL as declared, or part of the primary key: SQLite lets a non-INTEGER PRIMARY KEY hold
   * NULL (a documented quirk it keeps for compatibility), but the store never writes one there.
   */
  readonly notNull: boolean;
}

export interface SqliteTable {
  readonly name: string;
  readonly columns: readonly SqliteColumn[];
  /** Whether the table has SQLite's implicit rowid (neither WITHOUT ROWID nor aliased by an INTEGER PRIMARY KEY). */
  readonly implicitRowid: boolean;
}

/** The store's tables as SQLite describes them (its own `sqlite_*` tables left out), by name. */
export function sqliteTables(db: Db): SqliteTable[] {
  const names = db
    .prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .pluck()
    .all() as string[];
  return names.map((name) => {
    const info = db.prepare('SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid').all(name) as {
      name: string;
      type: string;
      notnull: number;
      pk: number;
    }[];
    const integerKey =
      info.filter((c) => c.pk > 0).length === 1 && info.some((c) => c.pk > 0 && c.type.toUpperCase() === 'INTEGER');
    const withoutRowid = (db.prepare('SELECT wr FROM pragma_table_list(?)').pluck().get(name) as number) === 1;
    return {
      name,
      columns: info.map((c) => ({ name: c.name, declaredType: c.type, notNull: c.notnull === 1 || c.pk > 0 })),
      implicitRowid: !withoutRowid && !integerKey,
    };
  });
}
