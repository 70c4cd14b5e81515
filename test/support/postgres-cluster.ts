/**
 * A real PostgreSQL 15 for the store's tests: the cluster itself (initdb, pg_ctl as the `postgres`
 * account, a free port, fsync on, scram) is scripts/lib/postgres-cluster.mjs, shared with the bench;
 * here, what the tests add: whether the machine can run one, databases of a test's own, and the
 * run's one cluster.
 *
 * Whoever starts one stops it (the run's one cluster: its global setup, after the last file), and an
 * exit hook stops it and removes its directory if the process ends first (a failed hook, an uncaught
 * error), so no `postgres` is left running. Test files share the run's cluster (`runPostgresCluster`).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { accountIds, CLUSTER_USER, POSTGRES_BIN, startCluster } from '../../scripts/lib/postgres-cluster.mjs';
import { type Availability, type Requirement, requirement, root } from './requirements.js';

export { POSTGRES_BIN };

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's test cluster's maintenance database (postgres-global-setup.ts); empty when no cluster runs. */
    postgresMaintenanceUrl: string;
  }
}

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

/** What a test needs of a cluster: databases of its own on it. */
export interface PostgresDatabases {
  /** `postgres://fleetpatch:…@127.0.0.1:<port>/postgres`: the maintenance database. */
  readonly url: string;
  /** Creates an empty database (of its own for one test, unless `name` is given) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** The URL of database `name` on this cluster. */
  urlOf(name: string): string;
}

export interface PostgresCluster extends PostgresDatabases {
  /** The temporary directory holding its data and log (no unix socket: clients connect over TCP). */
  readonly dir: string;
  readonly port: number;
  /** Restarts the server (fast shutdown: every connection is cut), keeping its data and port. */
  restart(): void;
  /** Stops the server (fast shutdown) and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** Databases on the cluster whose maintenance database is `maintenanceUrl` (it holds the password). */
export function databasesOn(maintenanceUrl: string): PostgresDatabases {
  const urlOf = (name: string) => {
    const url = new URL(maintenanceUrl);
    url.pathname = `/${name}`;
    return url.toString();
  };
  return {
    url: maintenanceUrl,
    urlOf,
    async createDatabase(name = `test_${process.pid}_${randomBytes(6).toString('hex')}`) {
      // Random by default, not counted: every test file of the run makes its databases on this cluster.
      const client = new pg.Client({ connectionString: maintenanceUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return urlOf(name);
    },
  };
}

/**
 * Initialises and starts a cluster (scripts/lib/postgres-cluster.mjs); resolves once it accepts
 * connections. `parent`: where its directory (data included) goes, e.g. a small file system a test fills.
 */
export async function startPostgresCluster({ parent }: { parent?: string } = {}): Promise<PostgresCluster> {
  const cluster = await startCluster(parent === undefined ? {} : { parent });
  let stopping: Promise<void> | undefined;
  return {
    ...databasesOn(cluster.urlOf('postgres')),
    dir: cluster.dir,
    port: cluster.port,
    restart: cluster.restart,
    stop() {
      stopping ??= Promise.resolve().then(() => cluster.stop());
      return stopping;
    },
  };
}

/**
 * The run's one cluster, for a test file: test/support/postgres-global-setup.ts starts it once for
 * every project that lists it, and each file makes databases of its own on it. Starting a cluster
 * per file cost 5–20 s each (initdb, then the server's start), most of some files' run time.
 */
export function runPostgresCluster(): PostgresDatabases {
  const url = inject('postgresMaintenanceUrl');
  if (!url)
    throw new Error(
      "no PostgreSQL cluster for this run: the test file's vitest project must list test/support/postgres-global-setup.ts in globalSetup",
    );
  return databasesOn(url);
}

/** Exported for the helper's own test: whether any `postgres` process still runs from `dir`. */
export function postmasterRunningIn(dir: string): boolean {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').some((line) => line.includes(dir));
}
