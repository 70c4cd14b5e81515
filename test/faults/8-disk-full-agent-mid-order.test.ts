import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { checkRollout, sumVerdicts } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet } from '../support/fault-scenario.js';
import { hostOf, readJournal } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';
import { smallFilesystems, useSmallFilesystems } from '../support/small-filesystem.js';

// Scenario 8, an agent's disk filling part-way through an order. Each host's agent stops itself
// (SIGSTOP, a test-only pause point) at a named step of the order; the test fills the small file
// system under it to the last byte and lets it go on, so the disk fills exactly between two steps:
//   - p8m-1: its data dir, once the order is journaled (`apply:accepted`): the snapshot's copy, the
//     next write that needs room there, fails — storage_full, nothing changed. (Once the snapshot is
//     durable, the journal's next writes are lines appended to the order's entry file, which fit in
//     the room its last page has left: a data dir full then no longer stops the order.);
//   - p8m-2: its data dir, once the new file is in place (`apply:applied`): the order's next journal
//     write is its last (`done`: `applied` and `verifying` are not journaled), which goes through (a
//     line that fits in the entry file's last page, or the journal's reserve) — the host ends healthy
//     and changed, its entry at rest, nothing torn;
//   - p8m-3: its file root, once the snapshot is durable: writing the new file fails part-way;
//   - p8m-4: the control.
// None may end half-written: the file is whole, with no temp file beside it; the journal reads back
// (by the agent's own schema); the coordinator got a clear failure from p8m-1 and p8m-3, whose files
// are old. Space returns: the same agents, never restarted, apply the change.

const PATH = '/etc/fault-8m/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 4;
const DISK_KIB = 4 * 1024;
/** Which host fills what, and at which step of the order. */
const FILLS: Record<string, { disk: 'data' | 'root'; pauseAt: string; fileWhenPaused: string }> = {
  'p8m-1': { disk: 'data', pauseAt: 'apply:accepted', fileWhenPaused: OLD },
  'p8m-2': { disk: 'data', pauseAt: 'apply:applied', fileWhenPaused: NEW },
  'p8m-3': { disk: 'root', pauseAt: 'apply:snapshotted', fileWhenPaused: OLD },
};
const FILLED = Object.keys(FILLS);
/** The hosts whose order the full disk stops: p8m-2's ends all the same. */
const STOPPED = ['p8m-1', 'p8m-3'];

/** Whether process `pid` is stopped (state T in /proc/<pid>/stat): paused at its pause point. */
async function stopped(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
}

describeNeeding([namespaces, smallFilesystems], "fault 8: an agent's disk fills part-way through an order", () => {
  // Registered before the fleet's hooks: unmounted after its agents stop.
  const disks = useSmallFilesystems('fault-8m');

  const fleetOf = useFaultFleet(() => ({
    name: 'p8m',
    hosts: HOSTS,
    path: PATH,
    initial: OLD,
    agentEnv: (id): Record<string, string> => {
      const fill = FILLS[id];
      return fill ? { FLEETPATCH_TEST_PAUSE_AT: fill.pauseAt } : {};
    },
    async prepareHost(id) {
      const rootDir = join(disks.base(), id, 'root');
      const dataDir = join(disks.base(), id, 'data');
      const fill = FILLS[id];
      if (fill) await disks.mount(id, fill.disk === 'data' ? dataDir : rootDir, DISK_KIB);
      await mkdir(dirname(join(rootDir, PATH)), { recursive: true });
      await writeFile(join(rootDir, PATH), OLD, { mode: 0o644 });
      return { rootDir, dataDir };
    },
  }));

  it('stops the order where the disk filled, reverts what it changed, never half-writes, and applies it once space returns', async () => {
    const fleet = fleetOf();
    const patchId = await createFilePatch(fleet, PATH, NEW);
    const startedAt = Date.now();
    const first = await startFleetRollout(fleet, patchId, { maxFailures: '100%', hostTimeoutSeconds: 60 });

    // Each filled host: paused at its step, its file as that step leaves it; filled; let go.
    await Promise.all(
      FILLED.map(async (id) => {
        const fill = FILLS[id] as (typeof FILLS)[string];
        const pid = fleet.agentOf(id).child.pid as number;
        await waitFor(`${id}'s agent paused at ${fill.pauseAt}`, () => stopped(pid), { timeoutMs: 30_000 });
        expect(await fleet.readFileOf(id)).toBe(fill.fileWhenPaused);
        const bytes = await disks.of(id).fill();
        console.log(
          `fault 8 (mid-order): ${id} paused at ${fill.pauseAt}, its ${fill.disk} file system filled (${bytes} bytes)`,
        );
        process.kill(pid, 'SIGCONT');
      }),
    );

    const firstDone = await fleet.fleet.waitForState(first, ['succeeded', 'halted'], 90_000);
    for (const id of FILLED) {
      const host = hostOf(firstDone, id);
      console.log(`fault 8 (mid-order): ${id} → ${host.state}: ${host.errorCode} ${host.reason}`);
      const stopped = STOPPED.includes(id);
      // Refused or reverted, and said so: nothing of the change is left on the host. Or (p8m-2) done,
      // and on the host whole.
      expect(host).toMatchObject(stopped ? { state: 'failed', changed: false } : { state: 'healthy', changed: true });
      expect(await fleet.readFileOf(id)).toBe(stopped ? OLD : NEW);
      // Nothing half-written beside it: only the file itself in its directory.
      expect(await readdir(dirname(fleet.fileOnHost(id)))).toEqual(['app.conf']);
      // The journal reads back by the agent's own schema, and holds the order at rest.
      const journal = await readJournal(fleet.dataOf(id));
      expect(journal.map((e) => [e.phase, e.changed])).toEqual([['done', !stopped]]);
      expect(fleet.agentRunning(id)).toBe(true);
    }
    expect(hostOf(firstDone, 'p8m-1')).toMatchObject({ errorCode: 'storage_full' });
    expect(hostOf(firstDone, 'p8m-1').reason).toMatch(/data dir is full \(ENOSPC\): the snapshot could not be stored/);
    expect(hostOf(firstDone, 'p8m-3').reason).toMatch(/ENOSPC/);
    expect(hostOf(firstDone, 'p8m-4')).toMatchObject({ state: 'healthy', changed: true });
    // Checked while the disks are still full: the results were recorded and acknowledged all the same.
    const firstVerdict = await checkRollout(fleet, { rolloutId: first, changedContent: NEW });

    // Space returns: the same agents, never restarted, take the next rollout and apply it.
    for (const id of FILLED) await disks.of(id).free();
    const second = await startFleetRollout(fleet, patchId, { target: { hostIds: STOPPED } });
    const secondDone = await fleet.fleet.waitForState(second, ['succeeded', 'halted'], 90_000);
    expect(secondDone.rollout.state).toBe('succeeded');
    const secondVerdict = await checkRollout(fleet, { rolloutId: second, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    for (const id of FILLED) expect(await fleet.readFileOf(id)).toBe(NEW);
    for (const id of FILLED) expect(fleet.agentRunning(id)).toBe(true);

    const verdict = sumVerdicts([firstVerdict, secondVerdict]);
    await recordRow(
      rowOf(
        '8 agent disk fills mid-order',
        HOSTS,
        [
          'data dir filled before the snapshot (1 host) and after the file was written (1 host, finished all the same)',
          'file root filled after the snapshot (1 host)',
          'then freed',
        ],
        verdict,
        convergeMs,
      ),
    );
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ lost: 0, doubled: 0 });
  });
});
