/**
 * A backup of a coordinator's store taken and restored while the coordinator is dead, for the test of
 * a coordinator restored from an older backup (test/coordinator-crash.test.ts). SQLite: the database
 * files copied (nothing writes them, so a plain copy is consistent). PostgreSQL: the README's recipe,
 * `pg_dump --format=custom`, restored with `pg_restore` into an empty database of the same name, so
 * the coordinator's config (its URL) stays as it was.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import { POSTGRES_BIN } from './postgres-cluster.js';
import type { StoreConfig } from './store-variants.js';

const run = promisify(execFile);
const HOST_RUN_STATES = 'SELECT state FROM host_runs WHERE rollout_id = $1 ORDER BY host_id';

export interface StoreBackup {
  /** Copies the store as it is now. */
  take(): Promise<void>;
  /** Puts the copy back in place of the store. */
  restore(): Promise<void>;
  /** The states of a rollout's host runs in the store as it is (read from the store, not the API). */
  hostRunStates(rolloutId: string): Promise<string[]>;
}

/** The backup of the store of a coordinator with data dir `dataDir` and config `config`, kept in `backupDir`. */
export function storeBackup(dataDir: string, config: StoreConfig, backupDir: string): StoreBackup {
  const url = config.store?.url;
  return url === undefined ? sqliteBackup(dataDir, backupDir) : postgresBackup(url, backupDir);
}

function sqliteBackup(dataDir: string, backupDir: string): StoreBackup {
  const isDbFile = (name: string) => name.startsWith('fleetpatch.db');
  return {
    async take() {
      await mkdir(backupDir);
      for (const file of (await readdir(dataDir)).filter(isDbFile))
        await copyFile(join(dataDir, file), join(backupDir, file));
    },
    async restore() {
      for (const file of (await readdir(dataDir)).filter(isDbFile)) await rm(join(dataDir, file));
      for (const file of await readdir(backupDir)) await copyFile(join(backupDir, file), join(dataDir, file));
    },
    async hostRunStates(rolloutId) {
      const db = new Database(join(dataDir, 'fleetpatch.db'), { readonly: true });
      try {
        const rows = db.prepare(HOST_RUN_STATES.replace('$1', '?')).all(rolloutId) as { state: string }[];
        return rows.map((r) => r.state);
      } finally {
        db.close();
      }
    },
  };
}

function postgresBackup(url: string, backupDir: string): StoreBackup {
  const dump = join(backupDir, 'fleetpatch.dump');
  const name = new URL(url).pathname.slice(1);
  const maintenance = new URL(url);
  maintenance.pathname = '/postgres';
  const withClient = async <T>(connectionString: string, use: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString });
    await client.connect();
    try {
      return await use(client);
    } finally {
      await client.end();
    }
  };
  return {
    async take() {
      await mkdir(backupDir);
      await run(join(POSTGRES_BIN, 'pg_dump'), ['--format=custom', `--file=${dump}`, url]);
    },
    async restore() {
      // FORCE: a connection of the SIGKILLed coordinator the server has not yet noticed is gone.
      await withClient(maintenance.href, async (client) => {
        await client.query(`DROP DATABASE "${name}" WITH (FORCE)`);
        await client.query(`CREATE DATABASE "${name}"`);
      });
      await run(join(POSTGRES_BIN, 'pg_restore'), ['--exit-on-error', `--dbname=${url}`, dump]);
    },
    async hostRunStates(rolloutId) {
      const { rows } = await withClient(url, (client) => client.query<{ state: string }>(HOST_RUN_STATES, [rolloutId]));
      return rows.map((r) => r.state);
    },
  };
}
