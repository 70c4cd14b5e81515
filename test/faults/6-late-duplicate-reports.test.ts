import { expect, it } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { checkRollout, hostsIn } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { linkFaults } from '../support/link-faults.js';
import { describeNeeding } from '../support/requirements.js';

// Scenario 6: three hosts are cut off mid-apply and time out; then their links flap (healed, cut
// again moments after they dial in, healed) while duplicating packets. Each agent re-sends a result
// the coordinator has not acknowledged on every reconnect, so the coordinator gets a burst of late
// and repeated reports: it records each order's account once, and counts nothing twice.

const PATH = '/etc/fault-6/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 6;
const FLAPS = 3;

describeNeeding([namespaces, linkFaults], 'fault 6: a burst of late and duplicate reports after healing', () => {
  const fleetOf = useFaultFleet({ name: 'p6', hosts: HOSTS, path: PATH, initial: OLD });

  it('ignores stale and repeated reports and double-counts nothing', async () => {
    const fleet = fleetOf();
    const patchId = await createFilePatch(fleet, PATH, NEW, 3);
    const rolloutId = await startFleetRollout(fleet, patchId, { maxFailures: '100%', hostTimeoutSeconds: 6 });
    const cut = fleet.hostIds.slice(0, 3);
    await waitForContent(fleet, cut, NEW);
    const startedAt = Date.now();
    for (const id of cut) fleet.partition(id);
    const ended = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 60_000);
    for (const id of cut) expect(hostOf(ended, id).state).toBe('timed_out');
    expect(hostsIn(ended, 'healthy')).toHaveLength(HOSTS - cut.length);

    const faults = fleet.degradeEveryLink({ duplicate: 0.2 });
    for (let flap = 0; flap < FLAPS; flap++) {
      for (const id of cut) fleet.heal(id);
      // Cut again just after they are back: a result sent, its acknowledgement maybe lost.
      await fleet.fleet.waitOnline(cut, 30_000);
      for (const id of cut) fleet.partition(id);
      await waitFor('the cut hosts offline', async () => {
        const status = await fleet.fleet.status(rolloutId);
        return cut.every((id) => !hostOf(status, id).online);
      });
    }
    for (const id of cut) fleet.heal(id);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    const counts = fleet.faultCounts();
    await recordRow(
      rowOf(
        '6 late + duplicate reports',
        HOSTS,
        [`partition of ${cut.length} hosts`, `${FLAPS} flaps`, ...faults, `${counts.duplicated} duplicated`],
        verdict,
        convergeMs,
      ),
    );
    const after = await fleet.fleet.status(rolloutId);
    expect(after.rollout.state).toBe(ended.rollout.state);
    for (const id of cut) expect(hostOf(after, id)).toMatchObject({ state: 'timed_out', changed: true });
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
  });
});
