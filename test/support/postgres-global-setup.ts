/**
 * The global setup of every vitest project whose tests use PostgreSQL: ONE cluster for the whole
 * run, started before the first file and stopped after the last, whichever projects run. Its
 * maintenance database's URL reaches the workers through `provide`; each test file makes databases
 * of its own on it (`runPostgresCluster()`, `SimulatedFleet.open()`). Where the cluster cannot run
 * (no PostgreSQL 15, not root) nothing starts: the files that need it are skipped and say why.
 *
 * Why a count on `globalThis`: vitest runs each project's global setup in the main process, but
 * through that project's own module runner, so a module-level variable here would be one per
 * project (one cluster per project). `globalThis` is the one thing they share.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { migratePostgres } from '../../packages/coordinator/src/store/postgres/postgres-migrate.js';
import { type PostgresCluster, postgresCluster, startPostgresCluster } from './postgres-cluster.js';
import { met } from './requirements.js';

/**
 * A database migrated once, which every simulated fleet's database is copied from (CREATE DATABASE
 * … TEMPLATE): half of what opening a fleet took was migrating an empty one. `Store.openPostgres`
 * still runs the migrations on each copy, and finds nothing left to do.
 */
export const FLEET_TEMPLATE_DATABASE = 'fleet_template';

interface SharedCluster {
  readonly started: Promise<PostgresCluster>;
  /** Projects whose setup has run and whose teardown has not. */
  users: number;
}

const SHARED = Symbol.for('fleetpatch.test.postgresCluster');
const shared = globalThis as typeof globalThis & { [SHARED]?: SharedCluster };

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  project.provide('postgresMaintenanceUrl', '');
  if (!met(...postgresCluster)) return undefined;
  shared[SHARED] ??= { started: startClusterWithTemplate(), users: 0 };
  const entry = shared[SHARED];
  entry.users += 1;
  const cluster = await entry.started;
  project.provide('postgresMaintenanceUrl', cluster.url);
  return async () => {
    entry.users -= 1;
    if (entry.users > 0) return;
    delete shared[SHARED];
    await cluster.stop();
  };
}

async function startClusterWithTemplate(): Promise<PostgresCluster> {
  const cluster = await startPostgresCluster();
  try {
    const client = new pg.Client({ connectionString: await cluster.createDatabase(FLEET_TEMPLATE_DATABASE) });
    await client.connect();
    try {
      await migratePostgres(client);
    } finally {
      await client.end();
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
