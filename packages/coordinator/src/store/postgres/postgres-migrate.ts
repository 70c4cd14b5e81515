import type { ClientBase } from 'pg';
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js';

/**
 * The advisory lock every coordinator takes to migrate: coordinators of one group start together,
 * and the second must wait for the first to finish, then find nothing left to do. (A constant any
 * program may read: the bytes of "fleetpat" as a signed 64-bit integer.)
 */
export const MIGRATION_LOCK_KEY = '7380385375773024628';

/** The version this coordinator brings a PostgreSQL store to. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS.at(-1)?.version ?? 0;

/**
 * Brings the database's schema up to date in one transaction under the migration lock: either every
 * pending migration is applied or none is, and two coordinators starting together apply each once.
 * Returns the versions it applied (none when another coordinator got there first).
 */
export async function migratePostgres(client: ClientBase): Promise<number[]> {
  await client.query('BEGIN');
  try {
    const applied = await migratePostgresWithin(client);
    await client.query('COMMIT');
    return applied;
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

/**
 * The same, inside a transaction the caller opened (migrate-store copies in the transaction that
 * created the schema, so a refused copy leaves no schema behind either). The lock is released with
 * that transaction, also when the connection drops.
 */
export async function migratePostgresWithin(client: ClientBase): Promise<number[]> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY]);
  await client.query(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz(3) NOT NULL)',
  );
  const rows = (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows;
  const done = new Set(rows.map((row) => row.version));
  const unknown = [...done].filter((version) => version > POSTGRES_SCHEMA_VERSION);
  if (unknown.length > 0) {
    // A newer coordinator migrated this database: running older code on its schema could lose data.
    throw new Error(
      `the PostgreSQL store's schema is at version ${Math.max(...unknown)}, newer than this coordinator's ${POSTGRES_SCHEMA_VERSION}: upgrade this coordinator`,
    );
  }
  const applied: number[] = [];
  for (const migration of POSTGRES_MIGRATIONS) {
    if (done.has(migration.version)) continue;
    await client.query(migration.sql);
    await migration.rewrite?.(client);
    await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, now())', [
      migration.version,
      migration.name,
    ]);
    applied.push(migration.version);
  }
  return applied;
}
