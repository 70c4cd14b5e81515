import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ErrorBody } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { samplePatch } from '../../scripts/lib/sample-specs.mjs';
import { checkRollout } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { readJournal } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { type PostgresCluster, postgresCluster, startPostgresCluster } from '../support/postgres-cluster.js';
import { describeNeeding } from '../support/requirements.js';
import { SmallFilesystem, smallFilesystems } from '../support/small-filesystem.js';

// Scenario 8, the coordinators' side on PostgreSQL: three coordinators (a group) on a cluster of its
// own whose whole directory (data and WAL) is on a small file system. A rollout is mid-apply when
// that file system fills to the last byte. The coordinators must refuse new work that needs room
// with a clear error (507 `storage_full`, naming PostgreSQL), not crash or hang, lose nothing they
// had committed, and carry on — the rollout included — once space returns.

const PATH = '/etc/fault-8p/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 4;
/** Room for the cluster (initdb's ~40 MB, a 16 MB WAL segment or three, one database) with some to spare. */
const DISK_KIB = 192 * 1024;
const GROUP = { coordinators: 3, leaseMs: 1500 };

describeNeeding(
  [namespaces, smallFilesystems, ...postgresCluster],
  'fault 8: the PostgreSQL file system of three coordinators fills',
  () => {
    let mountPoint: string | undefined;
    let disk: SmallFilesystem | undefined;
    let cluster: PostgresCluster | undefined;

    // Registered before the fleet's hooks: the cluster runs before the coordinators start and after they stop.
    beforeAll(async () => {
      mountPoint = await mkdtemp(join(tmpdir(), 'fleetpatch-fault-8p-'));
      disk = await SmallFilesystem.mount(mountPoint, DISK_KIB);
      cluster = await startPostgresCluster({ parent: mountPoint });
    });
    afterAll(async () => {
      await cluster?.stop();
      disk?.unmount();
      if (mountPoint) await rm(mountPoint, { recursive: true, force: true });
    });

    const fleetOf = useFaultFleet(async () => ({
      name: 'p8p',
      hosts: HOSTS,
      path: PATH,
      initial: OLD,
      store: { store: { kind: 'postgres', url: await (cluster as PostgresCluster).createDatabase() } },
      group: GROUP,
    }));

    it('answers 507 storage_full while full, keeps every committed write, and resumes the rollout', async () => {
      const fleet = fleetOf();
      const { api } = fleet.fleet;
      const coordinators = fleet.members.map((member) => member.coordinator);
      const patchId = await createFilePatch(fleet, PATH, NEW, 3);
      const rolloutId = await startFleetRollout(fleet, patchId, { hostTimeoutSeconds: 120 });
      await waitForContent(fleet, fleet.hostIds, NEW);

      const startedAt = Date.now();
      const filled = await disk?.fill();
      console.log(`fault 8 (coordinator, PostgreSQL): filled its cluster's file system with ${filled} bytes`);
      // New work that needs new pages (incompressible, so TOAST cannot shrink it): refused, the cause named.
      const big = samplePatch({
        title: 'while the disk is full',
        path: PATH,
        content: randomBytes(300_000).toString('base64').slice(0, 300_000),
      });
      const refused = await api.raw('POST', '/v1/patches', big);
      const body = (await refused.json()) as ErrorBody;
      console.log(`fault 8 (coordinator, PostgreSQL): POST /v1/patches → ${refused.status} ${JSON.stringify(body)}`);
      expect(refused.status).toBe(507);
      expect(body.error.code).toBe('storage_full');
      expect(body.error.message).toMatch(/PostgreSQL/);
      // The hosts finish verifying and report while the disk is still full: PostgreSQL records what
      // fits in the free room of pages it has, refuses the rest (not acknowledged: the agents keep it).
      await waitFor(
        'every agent done with its order (its journal says so) while the disk is full',
        async () => {
          const journals = await Promise.all(fleet.hostIds.map((id) => readJournal(fleet.dataOf(id))));
          return journals.every((j) => j.length > 0 && j.every((e) => e.phase === 'done')) || undefined;
        },
        { timeoutMs: 30_000 },
      );
      // Reads still work, and the process is up: what was committed is there.
      const whileFull = await fleet.fleet.status(rolloutId);
      expect(whileFull.rollout.id).toBe(rolloutId);
      for (const coordinator of coordinators) expect(coordinator.child.exitCode).toBeNull();
      const refusedReports = coordinators
        .flatMap((coordinator) => coordinator.logs)
        .filter((l) => l.includes('recording agent reports failed')).length;
      const serverLog = await readFile(join((cluster as PostgresCluster).dir, 'server.log'), 'utf8');
      console.log(
        `fault 8 (coordinator, PostgreSQL): while full, rollout ${whileFull.rollout.state}, ${refusedReports} report batch(es) refused; PostgreSQL logged ${serverLog.match(/No space left on device/g)?.length ?? 0} ENOSPC, ${serverLog.match(/PANIC/g)?.length ?? 0} PANIC`,
      );

      await disk?.free();
      const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 90_000);
      expect(done.rollout.state).toBe('succeeded');
      const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
      const convergeMs = Date.now() - startedAt;
      // New work is taken again, the same big patch included.
      expect(await fleet.fleet.createPatch(big)).toMatch(/./);
      // The same processes: none crashed and was restarted.
      expect(fleet.members.map((member) => member.coordinator)).toEqual(coordinators);
      for (const coordinator of coordinators) expect(coordinator.child.exitCode).toBeNull();
      await recordRow(
        rowOf(
          `8 coordinator disk full on PostgreSQL, ${GROUP.coordinators} coordinators`,
          HOSTS,
          ["PostgreSQL's file system (data and WAL) filled mid-rollout"],
          verdict,
          convergeMs,
        ),
      );
      expect(verdict.problems).toEqual([]);
      expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
    });
  },
);
