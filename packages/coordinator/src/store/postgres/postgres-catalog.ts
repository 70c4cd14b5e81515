import type { ClientBase } from 'pg';

export interface PostgresColumn {
  readonly name: string;
  /** `text`, `jsonb`, `bigint`, `integer`, `boolean`, `double precision`, `timestamp with time zone`. */
  readonly type: string;
  readonly notNull: boolean;
  /** An identity column: its sequence must be moved past the numbers migrate-store copies in. */
  readonly identity: boolean;
}

export interface PostgresTable {
  readonly name: string;
  readonly columns: readonly PostgresColumn[];
  /** The tables its foreign keys point at (itself left out). */
  readonly references: readonly string[];
}

/** The store's tables in the connection's current schema, by name. */
export async function postgresTables(client: ClientBase): Promise<PostgresTable[]> {
  const columns = await client.query<{
    table_name: string;
    column_name: string;
    data_type: string;
    is_nullable: string;
    is_identity: string;
  }>(
    `SELECT table_name, column_name, data_type, is_nullable, is_identity
       FROM information_schema.columns c
       JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
      WHERE table_schema = current_schema() AND t.table_type = 'BASE TABLE'
      ORDER BY table_name, ordinal_position`,
  );
  const references = await client.query<{ from_table: string; to_table: string }>(
    `SELECT DISTINCT c.conrelid::regclass::text AS from_table, c.confrelid::regclass::text AS to_table
       FROM pg_constraint c
      WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace AND c.conrelid <> c.confrelid`,
  );
  const tables = new Map<string, { name: string; columns: PostgresColumn[]; references: string[] }>();
  for (const row of columns.rows) {
    let table = tables.get(row.table_name);
    if (table === undefined) {
      table = { name: row.table_name, columns: [], references: [] };
      tables.set(row.table_name, table);
    }
    table.columns.push({
      name: row.column_name,
      type: row.data_type,
      notNull: row.is_nullable === 'NO',
      identity: row.is_identity === 'YES',
    });
  }
  for (const row of references.rows) tables.get(row.from_table)?.references.push(row.to_table);
  return [...tables.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The tables in an order where every table comes after the tables it references. */
export function referencedFirst(tables: readonly PostgresTable[]): PostgresTable[] {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const ordered: PostgresTable[] = [];
  const placed = new Set<string>();
  const visiting = new Set<string>();
  const place = (table: PostgresTable) => {
    if (placed.has(table.name)) return;
    if (visiting.has(table.name)) throw new Error(`foreign keys form a cycle through ${table.name}`);
    visiting.add(table.name);
    for (const name of table.references) {
      const referenced = byName.get(name);
      if (referenced) place(referenced);
    }
    visiting.delete(table.name);
    placed.add(table.name);
    ordered.push(table);
  };
  for (const table of tables) place(table);
  return ordered;
}
