/**
 * A real PostgreSQL 15 for the store's tests: the cluster itself (initdb, pg_ctl as the `postgres`
 * account, a free port, fsync on, scram) is scripts/lib/postgres-cluster.mjs, shared with the bench;
 * here, what the tests add: whether the machine can run one, a database per test, and the hooks.
 *
 * Whoever starts one stops it: `usePostgresCluster()` stops it after the file's tests, and an exit
 * hook stops it and removes its directory if the test process ends first (a failed hook, an uncaught
 * error), so no `postgres` is left running.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { accountIds, CLUSTER_USER, POSTGRES_BIN, startCluster } from '../../scripts/lib/postgres-cluster.mjs';
import { type Availability, type Requirement, requirement, root } from './requirements.js';

export { POSTGRES_BIN };

function postgresInstalled(): Availability {
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    try {
      accessSync(join(POSTGRES_BIN, tool), constants.X_OK);
    } catch {
      return { available: false, reason: `${POSTGRES_BIN}/${tool} is missing (apt-get install postgresql)` };
    }
  }
  if (accountIds(CLUSTER_USER) === undefined) {
    return {
      available: false,
      reason: `no "${CLUSTER_USER}" account to run the cluster as (apt-get install postgresql)`,
    };
  }
  return { available: true };
}

/** Debian's PostgreSQL 15 binaries and its `postgres` account; the tests also need `root` to use it. */
export const postgresql: Requirement = requirement('PostgreSQL 15', postgresInstalled());
/** Everything a test that starts a cluster needs. */
export const postgresCluster: readonly Requirement[] = [root, postgresql];

export interface PostgresCluster {
  /** The temporary directory holding its data, log and unix socket. */
  readonly dir: string;
  /** `postgres://fleetpatch:…@127.0.0.1:<port>/postgres`: the maintenance database. */
  readonly url: string;
  readonly port: number;
  /** Creates an empty database of its own for one test and returns its URL. */
  createDatabase(): Promise<string>;
  /** The URL of database `name` on this cluster. */
  urlOf(name: string): string;
  /** Restarts the server (fast shutdown: every connection is cut), keeping its data and port. */
  restart(): void;
  /** Stops the server (fast shutdown) and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** Initialises and starts a cluster (scripts/lib/postgres-cluster.mjs); resolves once it accepts connections. */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const cluster = await startCluster();
  let databases = 0;
  let stopping: Promise<void> | undefined;
  return {
    dir: cluster.dir,
    url: cluster.urlOf('postgres'),
    port: cluster.port,
    urlOf: cluster.urlOf,
    async createDatabase() {
      databases += 1;
      const name = `test_${databases}_${randomBytes(4).toString('hex')}`;
      const client = new pg.Client({ connectionString: cluster.urlOf('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return cluster.urlOf(name);
    },
    restart: cluster.restart,
    stop() {
      stopping ??= Promise.resolve().then(() => cluster.stop());
      return stopping;
    },
  };
}

/** One cluster for the file: started before its tests, stopped after them (even when they fail). */
export function usePostgresCluster(): () => PostgresCluster {
  let cluster: PostgresCluster | undefined;
  beforeAll(async () => {
    cluster = await startPostgresCluster();
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  }, 120_000);
  return () => {
    if (cluster === undefined) throw new Error('the PostgreSQL cluster has not started');
    return cluster;
  };
}

/** Exported for the helper's own test: whether any `postgres` process still runs from `dir`. */
export function postmasterRunningIn(dir: string): boolean {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').some((line) => line.includes(dir));
}
