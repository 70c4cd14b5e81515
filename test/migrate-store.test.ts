/**
 * `fleetpatch-coordinator migrate-store` moves an installation from SQLite to PostgreSQL without
 * losing its history. A real coordinator and three real agents make that history (enrollment, a
 * patch, an approved rollout in waves with its audit trail); the tables such a run leaves empty
 * (signed statements, the package inventory, metric analyses) get rows in the SQLite file as their
 * repositories write them. Then the built binary copies the file into a real PostgreSQL 15, and
 * every row of every table is compared between the two databases, value by value. A second run is
 * refused (the target is not empty) and changes nothing; a source at another schema version is
 * refused before anything is written; bad arguments exit 2, a file that is not a database exits 1.
 */
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { type CliResult, runNode } from './support/cli-process.js';
import { FleetHarness, sampleFilePatch } from './support/fleet-harness.js';
import { postgresCluster, runPostgresCluster } from './support/postgres-cluster.js';
import { describeNeeding } from './support/requirements.js';

const COORDINATOR = join(import.meta.dirname, '..', 'packages/coordinator/dist/bin/fleetpatch-coordinator.js');
const HOSTS = ['web-1', 'web-2', 'web-3'];
const PATH = '/etc/migrate-app/app.conf';
const AT = '2030-03-04T05:06:07.089Z';

function migrateStore(...args: string[]): Promise<CliResult> {
  return runNode([COORDINATOR, 'migrate-store', ...args], {});
}

async function connected(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** The store's tables in the SQLite file (its version table and SQLite's own left out). */
function sqliteTableNames(db: Database.Database): string[] {
  return db
    .prepare(
      "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite%' AND name <> 'schema_migrations' ORDER BY name",
    )
    .pluck()
    .all() as string[];
}

/**
 * Rows for the tables a file rollout leaves empty, written as their repositories write them: a
 * signed statement with a signature, a host's package inventory, a metric analysis with a
 * measurement. And an event appended then deleted, so SQLite's AUTOINCREMENT counter is past every
 * row left: the copy must move PostgreSQL's sequence past it, not just past the rows.
 */
function addRowsARolloutLeavesEmpty(db: Database.Database, rolloutId: string): number {
  db.prepare(
    'INSERT INTO statements (digest, rollout_id, kind, scope, json, created_at, used_at) VALUES (?, ?, ?, ?, ?, ?, NULL)',
  ).run('sha256:aa11', rolloutId, 'apply', 'rollout', '{"b":1, "a":[2,3],"a":"dup kept as written"}', AT);
  db.prepare(
    'INSERT INTO statement_signatures (digest, key_id, public_key, signature, signer, role, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  ).run('sha256:aa11', 'key-1', 'MCowBQYDK2VwAyEA', 'c2lnbmF0dXJl', 'alice', 'approver', AT);
  const version = db
    .prepare(
      'INSERT INTO package_versions (name, architecture, version, source, source_version, status) VALUES (?, ?, ?, ?, ?, ?) RETURNING id',
    )
    .pluck()
    .get('openssl', 'amd64', '3.0.15-1~deb12u1', 'openssl', '3.0.15-1~deb12u1', 'installed') as number;
  db.prepare(
    `INSERT INTO host_inventories (host_id, state, reason, digest, package_count, reported_at, confirmed_at)
     VALUES (?, 'reported', NULL, 'sha256:bb22', 1, ?, ?)
     ON CONFLICT (host_id) DO UPDATE SET state = 'reported', package_count = 1`,
  ).run('web-1', AT, AT);
  const inventory = db.prepare("SELECT id FROM host_inventories WHERE host_id = 'web-1'").pluck().get() as number;
  db.prepare('INSERT OR IGNORE INTO host_packages (inventory_id, package_version_id) VALUES (?, ?)').run(
    inventory,
    version,
  );
  db.prepare(
    `INSERT INTO analysis_runs (rollout_id, wave, name, attempt, started_at, last_at, taken, taken_in_bake, failed, inconclusive, verdict)
     VALUES (?, 0, 'error-rate', 1, 1893456000000, 1893456001500, 2, 1, 0, 0, 'passed')`,
  ).run(rolloutId);
  db.prepare(
    `INSERT INTO analysis_measurements (rollout_id, wave, name, attempt, at, phase, value, baseline, threshold, verdict, reason)
     VALUES (?, 0, 'error-rate', 1, ?, 'bake', 0.0125, NULL, 0.05, 'passed', NULL)`,
  ).run(rolloutId, AT);
  const seq = db
    .prepare("INSERT INTO events (actor, type, at) VALUES ('test', 'test.deleted', ?) RETURNING seq")
    .pluck()
    .get(AT) as number;
  db.prepare('DELETE FROM events WHERE seq = ?').run(seq);
  return seq;
}

/** The PostgreSQL type of every column, `table.column` → `boolean`, `jsonb`, `timestamp with time zone`… */
async function columnTypes(client: pg.Client): Promise<Map<string, string>> {
  const rows = await client.query<{ t: string; c: string; type: string }>(
    "SELECT table_name AS t, column_name AS c, data_type AS type FROM information_schema.columns WHERE table_schema = 'public'",
  );
  return new Map(rows.rows.map((r) => [`${r.t}.${r.c}`, r.type]));
}

/**
 * One value as both sides should agree on it: SQLite's 0/1 flags are PostgreSQL's booleans, its
 * JSON text is jsonb (compared parsed), its ISO text timestamps are timestamptz (compared as the
 * same ISO string), and integers are compared as decimal strings (int8 arrives as a string).
 */
function comparable(value: unknown, type: string | undefined, side: 'sqlite' | 'postgres'): unknown {
  if (value === null) return null;
  if (side === 'sqlite') {
    if (type === 'boolean') return value === 1n;
    if (type === 'jsonb') return JSON.parse(value as string);
    if (typeof value === 'bigint') return value.toString();
    return value;
  }
  if (value instanceof Date) return value.toISOString();
  if (type === 'bigint' || type === 'integer') return String(value);
  return value;
}

/** JSON.stringify with every object's keys sorted: jsonb keeps its own key order, not the writer's. */
function sortedKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Every row of `table` on both sides, normalised and sorted the same way. */
async function rowsOnBothSides(db: Database.Database, client: pg.Client, table: string, types: Map<string, string>) {
  const columns = (db.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(table) as string[]).concat(
    types.has(`${table}.rowid`) ? ['rowid'] : [],
  );
  const list = columns.map((c) => `"${c}"`).join(', ');
  const normalise = (rows: unknown[][], side: 'sqlite' | 'postgres') =>
    rows
      .map((row) =>
        JSON.stringify(
          Object.fromEntries(columns.map((c, i) => [c, comparable(row[i], types.get(`${table}.${c}`), side)])),
          sortedKeys,
        ),
      )
      .sort();
  const fromSqlite = db.prepare(`SELECT ${list} FROM "${table}"`).raw(true).safeIntegers(true).all() as unknown[][];
  const fromPostgres = (await client.query({ text: `SELECT ${list} FROM "${table}"`, rowMode: 'array' }))
    .rows as unknown[][];
  return { sqlite: normalise(fromSqlite, 'sqlite'), postgres: normalise(fromPostgres, 'postgres') };
}

describeNeeding(postgresCluster, 'migrate-store: a SQLite installation moved to PostgreSQL', () => {
  let work = '';
  let file = '';
  let deletedSeq = 0;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-migrate-store-'));
    const fleet = await FleetHarness.start(join(work, 'coordinator'), {
      tokens: [{ name: 'bob', token: 'e2e-approver-token-000000001', role: 'approver' }],
    });
    try {
      for (const host of HOSTS) {
        await mkdir(join(work, host, 'root', 'etc/migrate-app'), { recursive: true });
        await writeFile(join(work, host, 'root', PATH), 'old\n', { mode: 0o644 });
      }
      await fleet.spawnRegistered(HOSTS, { role: 'web' }, (host) => ({
        dataDir: join(work, host, 'data'),
        rootDir: join(work, host, 'root'),
      }));
      const patchId = await fleet.createPatch(sampleFilePatch(PATH, 'new\n'));
      const rolloutId = await fleet.startRollout(
        sampleRollout(patchId, { target: { labels: { role: 'web' } }, waves: [1, '100%'], requiredApprovals: 1 }),
        { approvedBy: fleet.client('bob') },
      );
      await fleet.waitForState(rolloutId, ['succeeded'], 60_000);
      await fleet.stop();
      file = join(work, 'coordinator', 'fleetpatch.db');
      const db = new Database(file);
      try {
        deletedSeq = addRowsARolloutLeavesEmpty(db, rolloutId);
      } finally {
        db.close();
      }
    } finally {
      await fleet.stop();
    }
  }, 120_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('copies every table, row for row, keeps event numbers and refuses a second copy', async () => {
    const url = await runPostgresCluster().createDatabase();
    const db = new Database(file, { readonly: true });
    const client = await connected(url);
    try {
      const tables = sqliteTableNames(db);
      const counts = Object.fromEntries(
        tables.map((t) => [t, Number(db.prepare(`SELECT count(*) FROM "${t}"`).pluck().get())]),
      );
      // Every table has rows, so the comparison below covers each.
      expect(Object.entries(counts).filter(([, n]) => n === 0)).toEqual([]);

      const copied = await migrateStore('--from', `sqlite:${file}`, '--to', `postgres:${url}`);
      expect(copied.stderr).toBe('');
      expect(copied.code).toBe(0);
      // The summary names every table with its row count, and never the password.
      for (const table of tables) expect(copied.stdout).toMatch(new RegExp(`^${table} +${counts[table]}$`, 'm'));
      expect(copied.stdout).not.toContain(new URL(url).password);

      const types = await columnTypes(client);
      for (const table of tables) {
        const rows = await rowsOnBothSides(db, client, table, types);
        expect(rows.postgres, table).toEqual(rows.sqlite);
      }
      // The signed statement is kept byte for byte (jsonb would have rewritten it).
      const statement = await client.query<{ json: string }>('SELECT json FROM statements');
      expect(statement.rows[0]?.json).toBe('{"b":1, "a":[2,3],"a":"dup kept as written"}');
      // New rows continue after every number SQLite handed out, the deleted event's included.
      const next = await client.query<{ seq: string }>(
        "INSERT INTO events (actor, type, at) VALUES ('test', 'after.migration', now()) RETURNING seq",
      );
      expect(BigInt(next.rows[0]?.seq ?? 0)).toBe(BigInt(deletedSeq) + 1n);
      await client.query("DELETE FROM events WHERE type = 'after.migration'");

      // A second copy into the same database is refused, and changes nothing there.
      const before = await client.query('SELECT count(*) AS n, max(seq) AS max FROM events');
      const again = await migrateStore('--from', `sqlite:${file}`, '--to', `postgres:${url}`);
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('the PostgreSQL database is not empty (agents: 3 rows');
      expect(again.stderr).toContain('nothing was changed');
      expect((await client.query('SELECT count(*) AS n, max(seq) AS max FROM events')).rows).toEqual(before.rows);
    } finally {
      db.close();
      await client.end();
    }
  });

  it('refuses a SQLite store at another schema version before writing anything', async () => {
    const url = await runPostgresCluster().createDatabase();
    const older = join(work, 'older.db');
    await copyFile(file, older);
    const db = new Database(older);
    db.prepare('DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)').run();
    db.close();
    const result = await migrateStore('--from', `sqlite:${older}`, '--to', url);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /the SQLite store is at schema version \d+, this coordinator's is \d+: start this version's coordinator/,
    );
    const client = await connected(url);
    try {
      // Not even the schema: the migration ran in the transaction that was rolled back.
      const tables = await client.query("SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'");
      expect(tables.rows).toEqual([{ n: 0 }]);
    } finally {
      await client.end();
    }
  });

  it('says what is wrong with its arguments and exits 2', async () => {
    const url = runPostgresCluster().urlOf('postgres');
    const cases: [string[], string][] = [
      [['--to', url], '--from sqlite:FILE is required'],
      [['--from', `sqlite:${file}`], '--to postgres:URL is required'],
      [['--from', file, '--to', url], `--from must be sqlite:FILE, not "${file}"`],
      [['--from', `sqlite:${join(work, 'missing.db')}`, '--to', url], '--from: no such file'],
      [['--from', `sqlite:${file}`, '--to', 'mysql://db/fleet'], '--to must be postgres:URL'],
      [['--from', `sqlite:${file}`, '--to', url, '--force'], "Unknown option '--force'"],
    ];
    // A file that is not a SQLite database is named as such, not blamed on the target.
    const notADatabase = join(work, 'notes.txt');
    await writeFile(notADatabase, 'not a database\n'.repeat(100));
    // Each refusal is a process of its own that writes nothing: they run side by side.
    const [result, refused] = await Promise.all([
      migrateStore('--from', `sqlite:${notADatabase}`, '--to', url),
      Promise.all(cases.map(async ([args, message]) => ({ args, message, refusal: await migrateStore(...args) }))),
    ]);
    for (const { args, message, refusal } of refused) {
      expect({ args, code: refusal.code }).toEqual({ args, code: 2 });
      expect(refusal.stderr).toContain(message);
      expect(refusal.stderr).toContain('usage: fleetpatch-coordinator migrate-store');
    }
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot open ${notADatabase}: file is not a database`);
  });
});
