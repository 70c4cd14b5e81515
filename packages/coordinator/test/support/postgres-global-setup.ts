/**
 * The `coordinator-postgres` project's global setup: one PostgreSQL cluster for the whole run,
 * started before the first file and stopped after the last. Its maintenance database's URL reaches
 * the workers through `provide`; `SimulatedFleet.open()` creates a fresh database on it per fleet.
 * Where the cluster cannot run (no PostgreSQL 15, not root) nothing starts: the project then runs
 * only engine-on-postgres.test.ts, which is skipped and says why (vitest.config.ts).
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { postgresCluster, startPostgresCluster } from '../../../../test/support/postgres-cluster.js';
import { met } from '../../../../test/support/requirements.js';
import { migratePostgres } from '../../src/store/postgres/postgres-migrate.js';

/**
 * A database migrated once, which every fleet's database is copied from (CREATE DATABASE …
 * TEMPLATE): half of what opening a fleet took was migrating an empty one. `Store.openPostgres`
 * still runs the migrations on each copy, and finds nothing left to do.
 */
export const FLEET_TEMPLATE_DATABASE = 'fleet_template';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The test cluster's maintenance database; empty when no cluster runs. */
    postgresMaintenanceUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  project.provide('postgresMaintenanceUrl', '');
  if (!met(...postgresCluster)) return undefined;
  const cluster = await startPostgresCluster();
  try {
    await createDatabase(cluster.url, FLEET_TEMPLATE_DATABASE);
    const client = new pg.Client({ connectionString: cluster.urlOf(FLEET_TEMPLATE_DATABASE) });
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
  project.provide('postgresMaintenanceUrl', cluster.url);
  return () => cluster.stop();
}

async function createDatabase(maintenanceUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: maintenanceUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}
