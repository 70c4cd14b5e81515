/**
 * SQLite migration 17 and PostgreSQL migration 7: host runs gain `delivered_at`, when their order
 * reached the host (the host timeout runs from it; an order still waiting for its host has none).
 * Runs already in flight when a coordinator is upgraded keep the deadlines they had: delivered when
 * dispatched. Each store is left at the version before, as a coordinator of then left it; the next
 * start migrates it. The same expectations on both stores: SQLite first, the reference.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { openDatabase } from '../src/store/database.js';
import { migratePostgres } from '../src/store/postgres/postgres-migrate.js';
import { postgresAtVersion, sqliteAtVersion } from './support/store-at-version.js';

const AT = '2030-01-07T12:00:00.000Z';

/** Host runs of one rollout as a coordinator before the migration wrote them: state and dispatch instant. */
const RUNS: readonly (readonly [hostId: string, state: string, dispatchedAt: number | null])[] = [
  ['web-1', 'queued', null],
  ['web-2', 'dispatched', 1000],
  ['web-3', 'verifying', 2000],
  ['web-4', 'healthy', 3000],
  ['web-5', 'reverting', 4000],
];

interface Subject {
  start(): Promise<void>;
  /** Each host run's delivery instant, by host. */
  delivered(): Promise<[string, number | null][]>;
  close(): Promise<void>;
}

function sqliteAt16(): Subject {
  const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-delivered-'));
  const file = join(dir, 'fleetpatch.db');
  const old = sqliteAtVersion(file, 16);
  old.prepare("INSERT INTO patches (id, spec, created_by, created_at) VALUES ('pat_1', '{}', 'alice', ?)").run(AT);
  old
    .prepare(
      "INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at) VALUES ('ro_1', 'pat_1', '{}', 'running', 'alice', ?, ?)",
    )
    .run(AT, AT);
  const insert = old.prepare(
    "INSERT INTO host_runs (rollout_id, host_id, wave, position, state, dispatched_at) VALUES ('ro_1', ?, 0, ?, ?, ?)",
  );
  for (const [position, [hostId, state, dispatchedAt]] of RUNS.entries())
    insert.run(hostId, position, state, dispatchedAt);
  old.close();

  let db: Database.Database | undefined;
  return {
    async start() {
      db = openDatabase(file);
    },
    async delivered() {
      const rows = db?.prepare('SELECT host_id, delivered_at FROM host_runs ORDER BY position').all() as {
        host_id: string;
        delivered_at: number | null;
      }[];
      return rows.map((row) => [row.host_id, row.delivered_at]);
    },
    async close() {
      db?.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresAt6(): Promise<Subject> {
  const client = await postgresAtVersion(6);
  await client.query("INSERT INTO patches (id, spec, created_by, created_at) VALUES ('pat_1', '{}', 'alice', $1)", [
    AT,
  ]);
  await client.query(
    "INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at) VALUES ('ro_1', 'pat_1', '{}', 'running', 'alice', $1, $1)",
    [AT],
  );
  for (const [position, [hostId, state, dispatchedAt]] of RUNS.entries()) {
    await client.query(
      "INSERT INTO host_runs (rollout_id, host_id, wave, position, state, dispatched_at) VALUES ('ro_1', $1, 0, $2, $3, $4)",
      [hostId, position, state, dispatchedAt],
    );
  }
  return {
    async start() {
      await migratePostgres(client);
    },
    async delivered() {
      const read = await client.query<{ host_id: string; delivered_at: string | null }>(
        'SELECT host_id, delivered_at FROM host_runs ORDER BY position',
      );
      return read.rows.map((row) => [row.host_id, row.delivered_at === null ? null : Number(row.delivered_at)]);
    },
    close: () => client.end(),
  };
}

function contract(open: () => Subject | Promise<Subject>): void {
  let subject: Subject | undefined;
  afterEach(async () => {
    await subject?.close();
    subject = undefined;
  });

  it('dates the delivery of each order in flight at its dispatch, and of no other run', async () => {
    subject = await open();
    await subject.start();
    expect(await subject.delivered()).toEqual([
      ['web-1', null],
      ['web-2', 1000],
      ['web-3', 2000],
      ['web-4', null],
      ['web-5', null],
    ]);
  });
}

describe('the delivery instant of host runs on SQLite (migration 17, the reference)', () => {
  contract(sqliteAt16);
});

describeNeeding(postgresCluster, 'the delivery instant of host runs on PostgreSQL (migration 7)', () => {
  contract(postgresAt6);
});
