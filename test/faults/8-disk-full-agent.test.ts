import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expect, it } from 'vitest';
import { checkRollout, sumVerdicts } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';
import { smallFilesystems, useSmallFilesystems } from '../support/small-filesystem.js';

// Scenario 8, the agents' side. Three hosts: one keeps its data dir (journal, snapshots) on a small
// file system of its own, one its file root (the target of the change), the third is the control.
// Both small file systems are filled to the last byte, then a rollout comes. Neither full host may
// end half-written: the order is refused or reverted, the file is exactly as before with no temp
// file beside it, and the coordinator, the journal and the file agree. Space returns: both agents
// take the next rollout of the same change and apply it.

const PATH = '/etc/fault-8a/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 3;
const DISK_KIB = 4 * 1024;
/** Host 1's data dir and host 2's file root are full; host 3 is the control. */
const JOURNAL_FULL = 'p8a-1';
const TARGET_FULL = 'p8a-2';

describeNeeding([namespaces, smallFilesystems], "fault 8: an agent's file systems fill", () => {
  // Registered before the fleet's hooks: unmounted after its agents stop.
  const disks = useSmallFilesystems('fault-8a');

  const fleetOf = useFaultFleet(() => ({
    name: 'p8a',
    hosts: HOSTS,
    path: PATH,
    initial: OLD,
    async prepareHost(id) {
      const rootDir = join(disks.base(), id, 'root');
      const dataDir = join(disks.base(), id, 'data');
      if (id === JOURNAL_FULL) await disks.mount(id, dataDir, DISK_KIB);
      if (id === TARGET_FULL) await disks.mount(id, rootDir, DISK_KIB);
      await mkdir(dirname(join(rootDir, PATH)), { recursive: true });
      await writeFile(join(rootDir, PATH), OLD, { mode: 0o644 });
      return { rootDir, dataDir };
    },
  }));

  it('refuses or reverts the order on a full disk, never half-written, and applies it once space returns', async () => {
    const fleet = fleetOf();
    const patchId = await createFilePatch(fleet, PATH, NEW);
    const full = [JOURNAL_FULL, TARGET_FULL];
    for (const id of full) await disks.of(id).fill();
    const startedAt = Date.now();
    const first = await startFleetRollout(fleet, patchId, { maxFailures: '100%', hostTimeoutSeconds: 60 });
    const firstDone = await fleet.fleet.waitForState(first, ['succeeded', 'halted'], 90_000);
    for (const id of full) {
      const host = hostOf(firstDone, id);
      console.log(`fault 8 (agent): ${id} → ${host.state}: ${host.errorCode} ${host.reason}`);
      expect(host).toMatchObject({ state: 'failed', changed: false });
      expect(await fleet.readFileOf(id)).toBe(OLD);
      // Nothing half-written beside it: only the file itself (and the filler) in its directory.
      expect(await readdir(dirname(fleet.fileOnHost(id)))).toEqual(['app.conf']);
    }
    expect(hostOf(firstDone, 'p8a-3')).toMatchObject({ state: 'healthy', changed: true });
    const firstVerdict = await checkRollout(fleet, { rolloutId: first, changedContent: NEW });

    // Space returns: the same agents, never restarted, take the next rollout.
    for (const id of full) await disks.of(id).free();
    const second = await startFleetRollout(fleet, patchId, { target: { hostIds: full } });
    const secondDone = await fleet.fleet.waitForState(second, ['succeeded', 'halted'], 90_000);
    expect(secondDone.rollout.state).toBe('succeeded');
    const secondVerdict = await checkRollout(fleet, { rolloutId: second, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    for (const id of full) expect(await fleet.readFileOf(id)).toBe(NEW);
    for (const id of full) expect(fleet.agentRunning(id)).toBe(true);

    const verdict = sumVerdicts([firstVerdict, secondVerdict]);
    await recordRow(
      rowOf(
        '8 agent disk full',
        HOSTS,
        [`data dir of 1 host, file root of 1 host filled (${DISK_KIB / 1024} MiB tmpfs each), then freed`],
        verdict,
        convergeMs,
      ),
    );
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ lost: 0, doubled: 0 });
  });
});
