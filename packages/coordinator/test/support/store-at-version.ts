import Database from 'better-sqlite3';
import pg from 'pg';
import { runPostgresCluster } from '../../../../test/support/postgres-cluster.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres/postgres-migrations.js';

/** When the migrations of a store at an older version were applied (what `schema_migrations` says). */
const APPLIED_AT = '2030-01-07T12:00:00.000Z';

/**
 * A SQLite file at schema `version`, as a coordinator of then left it: its migrations up to that
 * version applied and recorded, none after. Returns it open, to be filled and closed by the test.
 */
export function sqliteAtVersion(file: string, version: number): Database.Database {
  const db = new Database(file);
  db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  for (const migration of MIGRATIONS.filter((m) => m.version <= version)) {
    db.exec(migration.sql);
    db.prepare('INSERT INTO schema_migrations VALUES (?, ?, ?)').run(migration.version, migration.name, APPLIED_AT);
  }
  return db;
}

/** A new PostgreSQL database of the run's cluster at schema `version` (as `sqliteAtVersion`), connected. */
export async function postgresAtVersion(version: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: await runPostgresCluster().createDatabase() });
  await client.connect();
  await client.query(
    'CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz(3) NOT NULL)',
  );
  for (const migration of POSTGRES_MIGRATIONS.filter((m) => m.version <= version)) {
    await client.query(migration.sql);
    await client.query('INSERT INTO schema_migrations VALUES ($1, $2, $3)', [
      migration.version,
      migration.name,
      APPLIED_AT,
    ]);
  }
  return client;
}
