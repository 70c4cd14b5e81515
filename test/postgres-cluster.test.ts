/**
 * The PostgreSQL the store tests start (test/support/postgres-cluster.ts) is what it claims: Debian's
 * PostgreSQL 15 running as the unprivileged `postgres` account, on 127.0.0.1 only, fsync on, a
 * password required, a fresh database per test; and stopping it leaves no process and no files.
 */
import { existsSync, statSync } from 'node:fs';
import pg from 'pg';
import { expect, it } from 'vitest';
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

describeNeeding(postgresCluster, 'the test PostgreSQL cluster', () => {
  it('runs unprivileged on 127.0.0.1 with fsync on, and leaves nothing behind once stopped', async () => {
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
});
