/**
 * Schema migrations: numbered once each, in order, and a database that shipped at an earlier
 * version comes up to date on open with its rows intact. Two branches once both added a migration 6
 * (signed rollouts' statements, the package inventory): the inventory became 7, after the statements.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inventoryDigest, patchSummaryOf, storedPatch } from '@fleetpatch/shared';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/store/migrations.js';
import { Store } from '../src/store/store.js';
import { opensslHost, VULNERABLE } from './support/sample-inventory.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

const AT = '2030-01-07T12:00:00.000Z';

let dir: string;
let file: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fleetpatch-migrations-'));
  file = join(dir, 'fleetpatch.db');
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A database as a coordinator at schema `version` left it, written the way `openDatabase` writes one. */
function databaseAt(version: number, fill: (db: Database.Database) => void): void {
  const db = new Database(file);
  db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  for (const migration of MIGRATIONS.filter((m) => m.version <= version)) {
    db.exec(migration.sql);
    migration.rewrite?.(db);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
      migration.version,
      migration.name,
      AT,
    );
  }
  fill(db);
  db.close();
}

/** Patch pat_1 and its rollout ro_1 in `state`, as rows of any schema version from 1 on. */
function insertRollout(db: Database.Database, state: string): void {
  db.prepare("INSERT INTO patches (id, spec, created_by, created_at) VALUES ('pat_1', '{}', 'alice', ?)").run(AT);
  db.prepare(
    "INSERT INTO rollouts (id, patch_id, request, state, created_by, created_at, updated_at) VALUES ('ro_1', 'pat_1', '{}', ?, 'alice', ?, ?)",
  ).run(state, AT, AT);
}

function tables(store: Store): string[] {
  return store.db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .pluck()
    .all() as string[];
}

describe('migrations', () => {
  it('are numbered 1, 2, 3, … with no gap and no number twice', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, index) => index + 1));
  });

  it('put the signed statements at 6 and the package inventory at 7', () => {
    expect(MIGRATIONS.find((m) => m.version === 6)?.sql).toContain('CREATE TABLE statements');
    expect(MIGRATIONS.find((m) => m.version === 7)?.sql).toContain('CREATE TABLE host_packages');
  });

  it('bring a database at version 6 (signed rollouts) to the newest: its rows kept, the inventory usable', async () => {
    databaseAt(6, (db) => {
      db.prepare(
        "INSERT INTO agents (id, public_key, labels, created_at, enrolled_at) VALUES ('web-1', ?, '{}', ?, ?)",
      ).run('A'.repeat(43), AT, AT);
      insertRollout(db, 'draft');
      db.prepare(
        "INSERT INTO statements (digest, rollout_id, kind, scope, json, created_at) VALUES ('d1', 'ro_1', 'apply', 'rollout', '{}', ?)",
      ).run(AT);
      db.prepare(
        "INSERT INTO statement_signatures (digest, key_id, public_key, signature, signer, role, at) VALUES ('d1', 'k1', 'pk', 'sig', 'alice', 'author', ?)",
      ).run(AT);
    });

    const store = await Store.open(file);
    try {
      expect(store.db.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all()).toEqual(
        MIGRATIONS.map((m) => m.version),
      );
      expect(tables(store)).toEqual(
        expect.arrayContaining([
          'statements',
          'statement_signatures',
          'package_versions',
          'host_inventories',
          'host_packages',
        ]),
      );
      expect(store.db.prepare('SELECT signer FROM statement_signatures WHERE digest = ?').pluck().all('d1')).toEqual([
        'alice',
      ]);
      expect((await store.agents.list()).map((a) => a.id)).toEqual(['web-1']);

      const packages = opensslHost(VULNERABLE);
      await store.transaction(
        async () => await store.inventory.replace('web-1', packages, inventoryDigest(packages), AT),
      );
      expect(await store.inventory.packagesOf('web-1')).toHaveLength(packages.length);
    } finally {
      await store.close();
    }
  });

  it('put the after-change report of host runs at 8, a column an older row reads as null', async () => {
    databaseAt(7, (db) => {
      insertRollout(db, 'running');
      db.prepare(
        "INSERT INTO host_runs (rollout_id, host_id, wave, position, state) VALUES ('ro_1', 'web-1', 0, 0, 'healthy')",
      ).run();
    });
    const store = await Store.open(file);
    try {
      expect(await store.hostRuns.get('ro_1', 'web-1')).toMatchObject({ state: 'healthy', afterChange: null });
    } finally {
      await store.close();
    }
  });

  it('put patch summaries at 15, filled on open for the patches stored before, which lists then show', async () => {
    const patch = storedPatch(SAMPLE_PATCH_SPEC, { id: 'pat_1', createdBy: 'alice', createdAt: AT });
    databaseAt(14, (db) => {
      const { id, createdBy, createdAt, contentDigest, ...spec } = patch;
      db.prepare('INSERT INTO patches (id, spec, created_by, created_at, content_digest) VALUES (?, ?, ?, ?, ?)').run(
        id,
        JSON.stringify(spec),
        createdBy,
        createdAt,
        contentDigest,
      );
    });
    const store = await Store.open(file);
    try {
      expect(await store.patches.list(10)).toEqual([patchSummaryOf(patch)]);
    } finally {
      await store.close();
    }
  });

  it('put the delivery instant of host runs at 17: a run in flight keeps the deadlines it had, delivered when dispatched', async () => {
    databaseAt(16, (db) => {
      insertRollout(db, 'running');
      const run = db.prepare(
        'INSERT INTO host_runs (rollout_id, host_id, wave, position, state, order_id, dispatched_at) VALUES (?, ?, 0, ?, ?, ?, ?)',
      );
      run.run('ro_1', 'web-1', 0, 'dispatched', 'o1', 1000);
      run.run('ro_1', 'web-2', 1, 'applying', 'o2', 2000);
      run.run('ro_1', 'web-3', 2, 'healthy', 'o3', 3000);
    });
    const store = await Store.open(file);
    try {
      const delivered = (await store.hostRuns.forRollout('ro_1')).map((r) => [r.hostId, r.deliveredAt]);
      expect(delivered).toEqual([
        ['web-1', 1000],
        ['web-2', 2000],
        ['web-3', null],
      ]);
    } finally {
      await store.close();
    }
  });

  it('leave a database already at the newest version as it is', async () => {
    databaseAt(MIGRATIONS.length, () => {});
    const store = await Store.open(file);
    try {
      expect(store.db.prepare('SELECT COUNT(*) FROM schema_migrations').pluck().get()).toBe(MIGRATIONS.length);
      expect(store.db.prepare('SELECT DISTINCT applied_at FROM schema_migrations').pluck().all()).toEqual([AT]);
    } finally {
      await store.close();
    }
  });

  it('put the resolved packages of host runs at 9, a column an older row reads as null', async () => {
    databaseAt(8, (db) => {
      insertRollout(db, 'running');
      db.prepare(
        "INSERT INTO host_runs (rollout_id, host_id, wave, position, state) VALUES ('ro_1', 'web-1', 0, 0, 'queued')",
      ).run();
    });
    const store = await Store.open(file);
    try {
      expect(await store.hostRuns.get('ro_1', 'web-1')).toMatchObject({
        state: 'queued',
        packages: null,
        afterChange: null,
      });
    } finally {
      await store.close();
    }
  });
});
