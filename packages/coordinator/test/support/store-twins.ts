/**
 * A fresh SQLite file and a fresh migrated PostgreSQL database side by side, for the tests that hold
 * a PostgreSQL repository to its SQLite reference: the same calls go to both, and every answer must
 * be the same — order, nulls, booleans and timestamps included.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, expect } from 'vitest';
import { type PostgresDatabases, runPostgresCluster } from '../../../../test/support/postgres-cluster.js';
import { type Db, openDatabase } from '../../src/store/database.js';
import { PostgresExecutor } from '../../src/store/postgres/postgres-executor.js';
import { migratePostgres } from '../../src/store/postgres/postgres-migrate.js';

export interface StoreTwins {
  readonly sqlite: Db;
  readonly postgres: PostgresExecutor;
  /** The PostgreSQL database's URL, for a second coordinator's connections. */
  readonly postgresUrl: string;
  /** Rows the repository under test refers to (a rollout, a registered host), written to both databases. */
  seed: {
    rollout(id: string): Promise<void>;
    agent(id: string, seen?: { lastSeenAt?: string; revokedAt?: string; removedAt?: string }): Promise<void>;
  };
  close(): Promise<void>;
}

const AT = '2026-12-04T15:00:00.000Z';

export async function openStoreTwins(cluster: PostgresDatabases): Promise<StoreTwins> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-twins-'));
  const sqlite = openDatabase(join(dir, 'coordinator.db'));
  const url = await cluster.createDatabase();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await migratePostgres(client);
  } finally {
    await client.end();
  }
  const postgres = new PostgresExecutor(url, 2);
  const both = async (sql: string, values: unknown[]) => {
    sqlite.prepare(sql.replace(/\$\d+/g, '?')).run(...values);
    await postgres.query(sql, values);
  };
  return {
    sqlite,
    postgres,
    postgresUrl: url,
    seed: {
      async rollout(id) {
        await both('INSERT INTO patches (id, spec, created_by, created_at) VALUES ($1, $2, $3, $4)', [
          `patch-${id}`,
          '{}',
          'test',
          AT,
        ]);
        await both(
          `INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at)
           VALUES ($1, $2, $3, 'running', 'test', $4, $5)`,
          [id, `patch-${id}`, '{}', AT, AT],
        );
      },
      async agent(id, seen = {}) {
        await both(
          'INSERT INTO agents (id, created_at, last_seen_at, revoked_at, removed_at) VALUES ($1, $2, $3, $4, $5)',
          [id, AT, seen.lastSeenAt ?? null, seen.revokedAt ?? null, seen.removedAt ?? null],
        );
      },
    },
    async close() {
      sqlite.close();
      await postgres.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Maps become their entries, in order: two stores that count the same in another order differ. */
function comparable(value: unknown): unknown {
  if (value instanceof Map) return [...value].map(([k, v]) => [comparable(k), comparable(v)]);
  if (Array.isArray(value)) return value.map(comparable);
  return value;
}

type Outcome = { answered: true; value: unknown } | { answered: false };

async function settle(call: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { answered: true, value: await call() };
  } catch {
    return { answered: false };
  }
}

const shown = (outcome: Outcome) => (outcome.answered ? { answer: comparable(outcome.value) } : 'refused');

/**
 * Returns `same(call)`: runs `call` on the SQLite repository, then on the PostgreSQL one, and expects
 * the same answer from both, or both to refuse (throw). Resolves to the SQLite answer, or to
 * `undefined` after a refusal when `refusal` says one is expected (else a refusal fails the test).
 */
export type Same<R> = <T>(call: (repository: R) => Promise<T>, expected?: { refusal?: boolean }) => Promise<T>;

export function sameOnBoth<R>(sqlite: R, postgres: R): Same<R> {
  return async <T>(call: (repository: R) => Promise<T>, { refusal = false } = {}): Promise<T> => {
    const fromSqlite = await settle(() => call(sqlite));
    const fromPostgres = await settle(() => call(postgres));
    expect(shown(fromPostgres)).toStrictEqual(shown(fromSqlite));
    expect(fromSqlite.answered, 'whether the call answered').toBe(!refusal);
    return (fromSqlite.answered ? fromSqlite.value : undefined) as T;
  };
}

/**
 * For a test file: fresh twins (the PostgreSQL one a database of the run's one cluster) for each test, and `same` over the
 * two repositories `make` builds on them (after seeding what they refer to).
 */
export function useStoreTwins<R>(make: (twins: StoreTwins) => Promise<{ sqlite: R; postgres: R }>): {
  twins: () => StoreTwins;
  same: Same<R>;
} {
  let twins: StoreTwins | undefined;
  let same: Same<R> | undefined;
  beforeEach(async () => {
    twins = await openStoreTwins(runPostgresCluster());
    const repositories = await make(twins);
    same = sameOnBoth(repositories.sqlite, repositories.postgres);
  });
  afterEach(async () => {
    await twins?.close();
    twins = undefined;
  });
  const opened = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the store twins are open only while a test runs');
    return value;
  };
  return { twins: () => opened(twins), same: (call, expected) => opened(same)(call, expected) };
}
