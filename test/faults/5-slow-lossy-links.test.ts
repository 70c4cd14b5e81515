import { expect, it } from 'vitest';
import { checkRollout, hostsIn } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet } from '../support/fault-scenario.js';
import { namespaces } from '../support/host-namespaces.js';
import { linkFaults, linkFaultTools } from '../support/link-faults.js';
import { describeNeeding } from '../support/requirements.js';

// Scenario 5: every link slow (300 ms each way), lossy (5 %) and duplicating (5 %), and reordering
// where the kernel has netem. The rollout goes through its waves to the end, and no order runs twice.
// Without sch_netem (this project's CI kernel), the kernel's netfilter drops and duplicates packets
// and a TCP relay in front of the coordinator adds the latency; reordering is then not injected.

const PATH = '/etc/fault-5/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 8;

describeNeeding([namespaces, linkFaults], 'fault 5: latency, loss and duplication on every link', () => {
  const fleetOf = useFaultFleet(() => {
    const netem = linkFaultTools().netem;
    if (!netem) console.warn('fault 5: no sch_netem in this kernel: latency by a TCP relay, no reordering');
    return {
      name: 'p5',
      hosts: HOSTS,
      path: PATH,
      initial: OLD,
      heartbeatIntervalMs: 3000,
      ...(netem ? {} : { relayDelayMs: 300 }),
    };
  });

  it('completes the rollout with every order applied once', async () => {
    const fleet = fleetOf();
    const faults = fleet.degradeEveryLink({ delayMs: 300, loss: 0.05, duplicate: 0.05, reorder: 0.25 });
    expect(faults.length).toBeGreaterThanOrEqual(3);
    const startedAt = Date.now();
    const patchId = await createFilePatch(fleet, PATH, NEW);
    const rolloutId = await startFleetRollout(fleet, patchId, { waves: [1, '50%', '100%'], hostTimeoutSeconds: 120 });
    const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 150_000);
    expect(done.rollout.state).toBe('succeeded');
    expect(hostsIn(done, 'healthy')).toHaveLength(HOSTS);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    const counts = fleet.faultCounts();
    const injected =
      counts.dropped + counts.duplicated > 0
        ? [...faults, `${counts.dropped} dropped, ${counts.duplicated} duplicated`]
        : faults;
    await recordRow(rowOf('5 latency + loss + dup', HOSTS, injected, verdict, convergeMs));
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
  });
});
