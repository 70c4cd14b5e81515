import { expect, it } from 'vitest';
import { checkRollout, hostsIn } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet, waitForContent } from '../support/fault-scenario.js';
import { hostOf } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { describeOnEachStore } from '../support/store-variants.js';

// Scenario 2: the whole first wave is cut off mid-apply and the coordinator is SIGKILLed and
// restarted while it is: the new process has heard nothing from the wave, so it times the wave's
// hosts out and halts — it never advances to the next wave on its own. Healed, the hosts report what
// they did, recorded once; the rollout stays halted and the next wave untouched. On SQLite, then on
// PostgreSQL with three coordinators (issue 15): there the one killed is the one driving the
// rollout, another takes it over, and no coordinator of the group advances it.

const PATH = '/etc/fault-2/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 6;
const GROUP = { coordinators: 3, leaseMs: 1500 };

describeOnEachStore(
  'fault 2: a whole wave partitioned while the coordinator restarts',
  [namespaces],
  (store) => {
    const fleetOf = useFaultFleet(async () => ({
      name: store.kind === 'sqlite' ? 'p2' : 'p2pg',
      hosts: HOSTS,
      path: PATH,
      initial: OLD,
      store: await store.coordinatorConfig(),
      ...(store.group ? { group: store.group } : {}),
    }));

    it('does not advance to the next wave, and reconciles the wave once healed', async () => {
      const fleet = fleetOf();
      const patchId = await createFilePatch(fleet, PATH, NEW, 3);
      const rolloutId = await startFleetRollout(fleet, patchId, {
        waves: [2, '100%'],
        maxFailures: 0,
        hostTimeoutSeconds: 8,
      });
      const wave = ((await fleet.fleet.status(rolloutId)).waves[0]?.hosts ?? []).map((h) => h.hostId);
      expect(wave).toHaveLength(2);
      await waitForContent(fleet, wave, NEW);
      const startedAt = Date.now();
      for (const id of wave) fleet.partition(id);
      const crash = await fleet.crashCoordinator(rolloutId);
      const crashed = store.group
        ? `SIGKILL of the driving coordinator (${crash.killed}), taken over in ${crash.takeoverMs} ms`
        : 'coordinator SIGKILL';
      console.log(`fault 2${store.suffix}: ${crashed}`);
      const halted = await fleet.fleet.waitForState(rolloutId, ['halted', 'succeeded'], 30_000);
      expect(halted.rollout.state).toBe('halted');
      for (const id of wave) expect(hostOf(halted, id).state).toBe('timed_out');
      expect(hostsIn(halted, 'queued')).toHaveLength(HOSTS - wave.length);

      for (const id of wave) fleet.heal(id);
      const verdict = await checkRollout(fleet, { rolloutId, changedContent: NEW });
      const convergeMs = Date.now() - startedAt;
      await recordRow(
        rowOf(
          `2 wave cut + coordinator restart${store.suffix}`,
          HOSTS,
          ['partition of wave 1 (2 hosts)', crashed],
          verdict,
          convergeMs,
        ),
      );
      // No coordinator (every member of a group) advanced it: halted, the next wave still queued.
      for (const after of await fleet.statusEverywhere(rolloutId)) {
        expect(after.rollout.state).toBe('halted');
        expect(hostsIn(after, 'queued')).toHaveLength(HOSTS - wave.length);
        for (const id of wave) expect(hostOf(after, id)).toMatchObject({ state: 'timed_out', changed: true });
      }
      expect(verdict.problems).toEqual([]);
      expect(verdict).toMatchObject({ orders: 2, appliedOnce: 2, lost: 0, doubled: 0 });
    });
  },
  { postgresGroup: GROUP },
);
