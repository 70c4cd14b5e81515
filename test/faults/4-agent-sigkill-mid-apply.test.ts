import { expect, it } from 'vitest';
import { checkRollout } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeNeeding } from '../support/requirements.js';

// Scenario 4: half the hosts' agents are SIGKILLed at once while their orders verify (file written,
// order unfinished). Restarted, each recovers from its journal before it dials in: the interrupted
// order goes back to its snapshot and is reported as such, never run again. The other half finish.

const PATH = '/etc/fault-4/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 6;

describeNeeding([namespaces], 'fault 4: agents SIGKILLed mid-apply on several hosts at once', () => {
  const fleetOf = useFaultFleet({ name: 'p4', hosts: HOSTS, path: PATH, initial: OLD });

  it('recovers every killed host to a known state, reported once, with no order run twice', async () => {
    const fleet = fleetOf();
    const patchId = await createFilePatch(fleet, PATH, NEW, 4);
    const rolloutId = await startFleetRollout(fleet, patchId, { maxFailures: '100%', hostTimeoutSeconds: 120 });
    await waitForContent(fleet, fleet.hostIds, NEW);
    const killed = fleet.hostIds.filter((_, i) => i % 2 === 0);
    const startedAt = Date.now();
    await fleet.killAgents(killed);
    const mid = await fleet.fleet.status(rolloutId);
    // They died mid-apply: none had reported a result.
    for (const id of killed) expect(hostOf(mid, id).state).not.toBe('healthy');
    for (const id of killed) fleet.startAgent(id);

    const done = await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 90_000);
    const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
    const convergeMs = Date.now() - startedAt;
    await recordRow(
      rowOf('4 agent SIGKILL mid-apply', HOSTS, [`SIGKILL of ${killed.length} agents at once`], verdict, convergeMs),
    );
    for (const id of killed) {
      expect(await fleet.readFileOf(id)).toBe(OLD);
      expect(hostOf(done, id)).toMatchObject({ changed: false });
    }
    for (const id of fleet.hostIds.filter((h) => !killed.includes(h))) {
      expect(await fleet.readFileOf(id)).toBe(NEW);
      expect(hostOf(done, id)).toMatchObject({ state: 'healthy', changed: true });
    }
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
  });
});
