import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS } from './migrations.js';

export type Db = Database.Database;

/**
 * Opens (creating if needed) the coordinator's SQLite file in WAL mode and brings its schema up to
 * date. `synchronous = FULL` because every committed transition must survive power loss: the
 * coordinator may be killed at any instruction and must restart from what is on disk.
 */
export function openDatabase(file: string): Db {
  if (file !== ':memory:') createPrivately(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // 64 MiB of page cache (SQLite's default is 2 MiB): storing a host's package inventory touches a
  // page of the by-version index for nearly every package, all over an index of hundreds of MiB.
  db.pragma('cache_size = -65536');
  migrate(db);
  return db;
}

/**
 * The database holds agent and API token hashes and the whole audit trail: only the coordinator's
 * user may read it. The file is made 0600 before SQLite opens it because SQLite creates -wal and
 * -shm with the database file's mode. A file left too open by an older version (created under the
 * umask) is tightened silently: the fix is always wanted, and it happens once.
 */
function createPrivately(file: string): void {
  // `mode` applies to the directories this creates; one the operator made is theirs to set.
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  for (const path of [file, `${file}-wal`, `${file}-shm`]) {
    if (existsSync(path)) chmodSync(path, 0o600);
  }
}

function migrate(db: Db): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
  );
  const applied = new Set(
    db
      .prepare('SELECT version FROM schema_migrations')
      .all()
      .map((row) => (row as { version: number }).version),
  );
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    db.transaction(() => {
      db.exec(migration.sql);
      migration.rewrite?.(db);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        new Date().toISOString(),
      );
    })();
  }
}
