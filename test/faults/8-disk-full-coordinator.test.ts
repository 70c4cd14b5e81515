import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ErrorBody } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { samplePatch } from '../../scripts/lib/sample-specs.mjs';
import { checkRollout } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';
import { SmallFilesystem, smallFilesystems } from '../support/small-filesystem.js';

// Scenario 8, the coordinator's side: its data dir (the SQLite database and its WAL) is a small file
// system of its own. A rollout is mid-apply when the file system fills to the last byte. The
// coordinator must refuse new work with a clear error (507, `storage_full`, naming the cause), not
// crash, lose nothing it had committed, and carry on — the rollout included — once space returns.

const PATH = '/etc/fault-8c/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 4;
/** Room for the database and its WAL with some to spare; filled by the test, not by the workload. */
const DISK_KIB = 8 * 1024;

describeNeeding([namespaces, smallFilesystems], "fault 8: the coordinator's file system fills", () => {
  let mountPoint: string | undefined;
  let disk: SmallFilesystem | undefined;

  // Registered before the fleet's hooks: mounted before the coordinator starts, unmounted after it stops.
  beforeAll(async () => {
    mountPoint = await mkdtemp(join(tmpdir(), 'fleetpatch-fault-8c-'));
    disk = await SmallFilesystem.mount(mountPoint, DISK_KIB);
  });
  afterAll(async () => {
    disk?.unmount();
    if (mountPoint) await rm(mountPoint, { recursive: true, force: true });
  });

  const fleetOf = useFaultFleet(() => ({
    name: 'p8c',
    hosts: HOSTS,
    path: PATH,
    initial: OLD,
    coordinatorDir: join(mountPoint as string, 'coordinator'),
  }));

  it('answers 507 storage_full while full, keeps every committed write, and resumes the rollout', async () => {
    const fleet = fleetOf();
    const { api } = fleet.fleet;
    const coordinator = fleet.fleet.coordinator;
    const patchId = await createFilePatch(fleet, PATH, NEW, 3);
    const nextPatchId = await createFilePatch(fleet, PATH, OLD);
    const rolloutId = await startFleetRollout(fleet, patchId, { hostTimeoutSeconds: 120 });
    await waitForContent(fleet, fleet.hostIds, NEW);

    const startedAt = Date.now();
    const filled = await disk?.fill();
    console.log(`fault 8 (coordinator): filled its file system with ${filled} bytes`);
    // New work, big enough that the database must grow: refused, with the cause named.
    const big = samplePatch({ title: 'while the disk is full', path: PATH, content: 'x'.repeat(300_000) });
    const refused = await api.raw('POST', '/v1/patches', big);
    const body = (await refused.json()) as ErrorBody;
    console.log(`fault 8 (coordinator): POST /v1/patches → ${refused.status} ${JSON.stringify(body)}`);
    expect(refused.status).toBe(507);
    expect(body.error.code).toBe('storage_full');
    expect(body.error.message).toMatch(/SQLITE_FULL/);
    const refusedRollout = await api.raw('POST', '/v1/rollouts', {
      patchId: nextPatchId,
      target: { hostIds: [...fleet.hostIds] },
      requiredApprovals: 0,
    });
    expect(refusedRollout.status).toBe(507);
    // The hosts finish verifying and report while the disk is still full: the reports cannot be
    // recorded (so they are not acknowledged, and the agents keep them) until space returns.
    await waitFor(
      'agent reports refused by the full database',
      () => fleet.fleet.coordinator.logs.some((l) => l.includes('recording agent reports failed')) || undefined,
      { timeoutMs: 30_000 },
    );
    // Reads still work: what was committed is there.
    expect((await fleet.fleet.status(rolloutId)).rollout.id).toBe(rolloutId);
    expect(coordinator.child.exitCode).toBeNull();

    const { rollout: whileFull } = await fleet.fleet.status(rolloutId);
    expect(whileFull.state).toBe('running');
    await disk?.free();
    const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 90_000);
    expect(done.rollout.state).toBe('succeeded');
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    // New work is taken again.
    const after = await fleet.fleet.createPatch(
      samplePatch({ title: 'after space returned', path: PATH, content: NEW }),
    );
    expect(after).toMatch(/./);
    expect(fleet.fleet.coordinator).toBe(coordinator);
    expect(coordinator.child.exitCode).toBeNull();
    await recordRow(
      rowOf('8 coordinator disk full', HOSTS, ['SQLite file system filled mid-rollout'], verdict, convergeMs),
    );
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
  });
});
