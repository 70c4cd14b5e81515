/**
 * The PostgreSQL schema against the SQLite one, on a real PostgreSQL 15: after both are migrated,
 * they have the same tables, the same columns and the same NOT NULLs, so a migration added to one
 * store and not the other fails here instead of at an operator's migrate-store. And migrating is
 * safe for a group of coordinators: two starting together on one fresh database leave one schema,
 * a schema newer than the coordinator is refused, a migration that fails leaves nothing behind.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { expect, it } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { openDatabase } from '../src/store/database.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { postgresTables } from '../src/store/postgres/postgres-catalog.js';
import { migratePostgres, POSTGRES_SCHEMA_VERSION } from '../src/store/postgres/postgres-migrate.js';
import { GROUP_TABLES, POSTGRES_MIGRATIONS } from '../src/store/postgres/postgres-migrations.js';
import { sqliteTables } from '../src/store/sqlite-catalog.js';

const STORE_SOURCES = new URL('../src/store/', import.meta.url).pathname;

/**
 * The tables whose rows the SQLite repositories order by rowid ("the order they were written"):
 * PostgreSQL has no rowid, so its schema gives these tables a `rowid` column. Read from the
 * repositories' SQL, so a new `ORDER BY rowid` on another table fails the parity test until the
 * PostgreSQL schema has that column too.
 */
function tablesOrderedByRowid(): string[] {
  const tables = new Set<string>();
  for (const file of readdirSync(STORE_SOURCES).filter((f) => f.endsWith('-repository.ts'))) {
    const source = readFileSync(join(STORE_SOURCES, file), 'utf8');
    for (const [, , sql] of source.matchAll(/(['`])([^'`]*?\browid\b[^'`]*?)\1/g)) {
      const table = /\bFROM\s+(\w+)/i.exec(sql ?? '')?.[1];
      if (table === undefined) throw new Error(`${file}: cannot tell which table this rowid is of: ${sql}`);
      tables.add(table);
    }
  }
  return [...tables].sort();
}

/** `table.column NOT NULL` / `table.column NULL`, one line a column, sorted: a readable diff. */
function columnLines(tables: readonly { name: string; columns: readonly { name: string; notNull: boolean }[] }[]) {
  return tables.flatMap((t) => t.columns.map((c) => `${t.name}.${c.name} ${c.notNull ? 'NOT NULL' : 'NULL'}`)).sort();
}

async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

describeNeeding(postgresCluster, 'the PostgreSQL store schema', () => {
  it('has the tables, columns and NOT NULLs of the SQLite schema after all its migrations', async () => {
    const sqlite = openDatabase(':memory:');
    const client = await connected(await runPostgresCluster().createDatabase());
    try {
      await migratePostgres(client);
      const fromSqlite = sqliteTables(sqlite);
      const rowidTables = tablesOrderedByRowid();
      expect(rowidTables).toEqual(['host_runs', 'statement_signatures', 'statements']);
      for (const name of rowidTables) {
        expect(fromSqlite.find((t) => t.name === name)?.implicitRowid, `${name} has SQLite's implicit rowid`).toBe(
          true,
        );
      }
      const expected = fromSqlite.map((t) => ({
        name: t.name,
        columns: rowidTables.includes(t.name) ? [...t.columns, { name: 'rowid', notNull: true }] : t.columns,
      }));
      const actual = (await postgresTables(client)).filter((t) => !GROUP_TABLES.includes(t.name));
      expect(actual.map((t) => t.name)).toEqual(expected.map((t) => t.name));
      expect(columnLines(actual)).toEqual(columnLines(expected));
      // Both at the newest migration each knows, and PostgreSQL's newest matches SQLite's newest.
      expect(POSTGRES_MIGRATIONS.at(-1)?.sqliteVersion).toBe(MIGRATIONS.at(-1)?.version);
    } finally {
      sqlite.close();
      await client.end();
    }
  });

  it('lets two coordinators migrate one fresh database at once: each migration applied once', async () => {
    const url = await runPostgresCluster().createDatabase();
    const [a, b] = await Promise.all([connected(url), connected(url)]);
    try {
      const applied = await Promise.all([migratePostgres(a), migratePostgres(b)]);
      // One applied every migration, the other waited on the lock and found nothing to do.
      expect(applied.map((versions) => versions.length).sort()).toEqual([0, POSTGRES_MIGRATIONS.length]);
      const versions = await a.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(versions.rows.map((r) => r.version)).toEqual(POSTGRES_MIGRATIONS.map((m) => m.version));
      // A third start later finds the schema up to date.
      expect(await migratePostgres(b)).toEqual([]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('refuses a schema a newer coordinator migrated, and changes nothing', async () => {
    const client = await connected(await runPostgresCluster().createDatabase());
    try {
      await migratePostgres(client);
      const newer = POSTGRES_SCHEMA_VERSION + 1;
      await client.query("INSERT INTO schema_migrations VALUES ($1, 'from the future', now())", [newer]);
      await expect(migratePostgres(client)).rejects.toThrow(
        `the PostgreSQL store's schema is at version ${newer}, newer than this coordinator's ${POSTGRES_SCHEMA_VERSION}`,
      );
      const count = await client.query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations');
      expect(count.rows[0]?.n).toBe(String(POSTGRES_MIGRATIONS.length + 1));
    } finally {
      await client.end();
    }
  });

  it('leaves no half schema when a migration fails', async () => {
    const client = await connected(await runPostgresCluster().createDatabase());
    try {
      // A database already holding an unrelated `events` table: migration 1 fails part-way through.
      await client.query('CREATE TABLE events (id integer)');
      await expect(migratePostgres(client)).rejects.toThrow('relation "events" already exists');
      const tables = await postgresTables(client);
      expect(tables.map((t) => t.name)).toEqual(['events']);
    } finally {
      await client.end();
    }
  });
});
