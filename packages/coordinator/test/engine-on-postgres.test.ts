/**
 * The `coordinator-postgres` project's own checks: the engine specification it runs is on
 * PostgreSQL (its global setup started a cluster, and a fleet opens a PostgreSQL store), and a
 * coordinator configured with `store: {kind: postgres, url}` keeps its state there. Where the
 * cluster cannot run, this is the one file the project runs, and it is skipped saying why.
 */
import pg from 'pg';
import { expect, inject, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { createFleetDatabase, SimulatedFleet } from './support/simulated-fleet.js';
import { callApi, startTestCoordinator, TOKENS } from './support/test-coordinator.js';

describeNeeding(postgresCluster, 'the engine specification on PostgreSQL', () => {
  it('opens every simulated fleet on a PostgreSQL database of the cluster the project started', async () => {
    expect(inject('postgresMaintenanceUrl')).toMatch(/^postgres:\/\/.*@127\.0\.0\.1:\d+\/postgres$/);
    const fleet = await SimulatedFleet.open();
    expect(fleet.store.backend.kind).toBe('postgres');
    expect((await fleet.store.patches.list(10)).map((p) => p.id)).toEqual(['pat_spec']);
    await fleet.close();
  });

  it('a coordinator configured with a PostgreSQL store migrates it and keeps what the API writes there', async () => {
    const url = await createFleetDatabase();
    const coordinator = await startTestCoordinator({ store: { kind: 'postgres', url } });
    let patchId: string;
    try {
      const created = await callApi(coordinator.app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC, TOKENS.operator);
      expect(created.status).toBe(201);
      patchId = (created.body as { id: string }).id;
      expect(coordinator.logLines.find((line) => line.msg === 'store open')).toMatchObject({
        store: expect.stringMatching(/^postgres postgres:\/\/fleetpatch:\*\*\*@127\.0\.0\.1:\d+\/fleet_/),
      });
    } finally {
      await coordinator.close();
    }
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const rows = await client.query('SELECT id, created_by FROM patches');
      expect(rows.rows).toEqual([{ id: patchId, created_by: 'olga' }]);
    } finally {
      await client.end();
    }
  });
});
