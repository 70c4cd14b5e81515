/**
 * The PostgreSQL the store tests start (test/support/postgres-cluster.ts) is what it claims: Debian's
 * PostgreSQL 15 running as the unprivileged `postgres` account, on 127.0.0.1 only, fsync on, a
 * password required, a fresh database per test; and stopping it leaves no process and no files —
 * also when a test file ends without stopping it, or its run is cut short by a signal.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { type ExpectStatic, it } from 'vitest';
import { postgresCluster, postmasterRunningIn, startPostgresCluster } from './support/postgres-cluster.js';
import { describeNeeding } from './support/requirements.js';

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

const FIXTURE = fileURLToPath(new URL('./fixtures/postgres-cluster/', import.meta.url));
const VITEST = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));

/** Runs the fixture (a test that starts a cluster and never stops it); resolves with the cluster's directory. */
async function abandonedCluster(end: 'exit' | 'signal'): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), 'fleetpatch-pg-fixture-'));
  try {
    const dirFile = join(work, 'cluster-dir');
    // The outer run's own variables (VITEST_WORKER_ID, …) must not make the inner one think it is a worker.
    const outer = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('VITEST')));
    await new Promise<void>((resolve) => {
      // Its exit status is not the point (a run killed by a signal fails): what it leaves behind is.
      execFile(
        process.execPath,
        [VITEST, 'run', '--root', FIXTURE],
        { cwd: FIXTURE, env: { ...outer, CI: '', FIXTURE_END: end, FIXTURE_CLUSTER_DIR_FILE: dirFile } },
        () => resolve(),
      );
    });
    return readFileSync(dirFile, 'utf8');
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The stop runs in a process of its own once the test process is gone: wait for it, with a deadline. */
async function expectCleanedUp(expect: ExpectStatic, dir: string): Promise<void> {
  await expect.poll(() => postmasterRunningIn(dir) || existsSync(dir), { timeout: 30_000, interval: 100 }).toBe(false);
}

// Each test starts clusters of its own in directories of their own: they run side by side (and
// so use the test's own `expect`, which counts its assertions).
describeNeeding(postgresCluster, 'the test PostgreSQL cluster', () => {
  it.concurrent('runs unprivileged on 127.0.0.1 with fsync on, and leaves nothing behind once stopped', async ({
    expect,
  }) => {
    const cluster = await startPostgresCluster();
    try {
      expect(postmasterRunningIn(cluster.dir)).toBe(true);
      expect(statSync(`${cluster.dir}/data`).uid).not.toBe(0);
      const [settings] = await query(
        cluster.url,
        "SELECT current_setting('server_version_num') AS version, current_setting('fsync') AS fsync, current_setting('listen_addresses') AS listen",
      );
      expect(settings).toMatchObject({ fsync: 'on', listen: '127.0.0.1' });
      expect(Number(settings?.version)).toBeGreaterThanOrEqual(150000);
      expect(Number(settings?.version)).toBeLessThan(160000);
      // Each test gets an empty database of its own.
      const first = await cluster.createDatabase();
      const second = await cluster.createDatabase();
      expect(first).not.toBe(second);
      expect(await query(first, "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'")).toEqual([
        { n: 0 },
      ]);
      // A wrong password is refused: the cluster is not open to every local user.
      const wrong = cluster.url.replace(/:[0-9a-f]+@/, ':wrong@');
      await expect(query(wrong, 'SELECT 1')).rejects.toThrow('password authentication failed');
    } finally {
      await cluster.stop();
    }
    expect(postmasterRunningIn(cluster.dir)).toBe(false);
    expect(existsSync(cluster.dir)).toBe(false);
    // Stopping twice is harmless.
    await cluster.stop();
  });

  it.concurrent('is stopped and removed when a test file ends without stopping it', async ({ expect }) => {
    const dir = await abandonedCluster('exit');
    expect(dir).toContain('fleetpatch-pg-');
    await expectCleanedUp(expect, dir);
  });

  it.concurrent('is stopped and removed when the test process is killed by SIGTERM', async ({ expect }) => {
    const dir = await abandonedCluster('signal');
    expect(dir).toContain('fleetpatch-pg-');
    await expectCleanedUp(expect, dir);
  });
});
