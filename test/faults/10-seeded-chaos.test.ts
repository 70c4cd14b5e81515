import { expect, it } from 'vitest';
import { checkRollout, sumVerdicts, type Verdict } from '../support/fault-checker.js';
import { recordRow, rowOf } from '../support/fault-results.js';
import { createFilePatch, startFleetRollout, useFaultFleet } from '../support/fault-scenario.js';
import { FINAL_REVERT_STATES } from '../support/fleet-harness.js';
import { namespaces } from '../support/host-namespaces.js';
import { linkFaults } from '../support/link-faults.js';
import { describeNeeding } from '../support/requirements.js';
import { SeededRandom } from '../support/seeded-random.js';

// Scenario 10: a short chaos run. For a bounded time, rollouts (each on a file of its own, every
// other one reverted) run one after another over twenty hosts while a seeded random schedule partitions
// hosts, SIGKILLs agents and the coordinator, and drops and duplicates packets on links. Then the
// faults stop, everything heals, and the checker verifies every order of every rollout. The seed is
// printed; FLEETPATCH_FAULT_SEED=<seed> replays the same schedule (a loaded machine's timing aside).

const HOSTS = 20;
/** No new rollout starts after this long; the chaos goes on until the last one has ended. */
const CHAOS_MS = 20_000;

type Fault = 'partition' | 'agent' | 'coordinator' | 'link';

describeNeeding([namespaces, linkFaults], 'fault 10: a seeded chaos run over twenty hosts', () => {
  const fleetOf = useFaultFleet({ name: 'p10', hosts: HOSTS, path: '/etc/chaos/r0.conf', initial: 'r = 0\n' });

  it('keeps every invariant over every order of its rollouts and reverts', async () => {
    const fleet = fleetOf();
    const random = SeededRandom.fromEnv('fault 10 (chaos schedule)');
    const injected = new Map<Fault, number>();
    /** Set while the workload sends a request that changes something: no coordinator kill lands in it. */
    let mutating = false;
    let workloadDone = false;
    const partitioned = new Set<string>();
    const killed = new Set<string>();
    const degraded = new Set<string>();

    /** Undoes the fault on each host of `faulty` with probability `p`. */
    const undoSome = (faulty: Set<string>, p: number, undo: (id: string) => void) => {
      for (const id of [...faulty]) {
        if (random.next() >= p) continue;
        undo(id);
        faulty.delete(id);
      }
    };

    /** One fault at a time, each undone by the next round or at the end. */
    const chaos = async () => {
      while (!workloadDone) {
        await new Promise((resolve) => setTimeout(resolve, random.between(500, 2000)));
        // Undo what the last rounds did, a host at a time, as a real network and operator would.
        undoSome(partitioned, 0.5, (id) => fleet.heal(id));
        undoSome(killed, 0.7, (id) => fleet.startAgent(id));
        undoSome(degraded, 0.5, (id) => fleet.restoreLink(id));
        const fault = random.pick<Fault>(['partition', 'partition', 'agent', 'agent', 'coordinator', 'link']);
        const host = random.pick(fleet.hostIds);
        if (fault === 'partition' && !partitioned.has(host)) {
          fleet.partition(host);
          partitioned.add(host);
        } else if (fault === 'agent' && !killed.has(host)) {
          await fleet.killAgents([host]);
          killed.add(host);
        } else if (fault === 'coordinator' && !mutating) {
          await fleet.crashCoordinator();
        } else if (fault === 'link' && !degraded.has(host)) {
          fleet.degradeLink(host, { loss: 0.1, duplicate: 0.1 });
          degraded.add(host);
        } else continue;
        injected.set(fault, (injected.get(fault) ?? 0) + 1);
      }
    };

    /** A request that changes state, retried while the coordinator is down (it was not sent, or refused). */
    const mutate = async <T>(what: () => Promise<T>): Promise<T> => {
      mutating = true;
      try {
        for (let attempt = 0; ; attempt++) {
          try {
            return await what();
          } catch (err) {
            if (attempt >= 20 || !/fetch failed|ECONNREFUSED/.test(String((err as Error).message ?? err))) throw err;
            await new Promise((resolve) => setTimeout(resolve, 250));
          }
        }
      } finally {
        mutating = false;
      }
    };

    const startedAt = Date.now();
    interface Round {
      rolloutId: string;
      path: string;
      content: string;
    }
    const workload = async (): Promise<Round[]> => {
      const rounds: Round[] = [];
      let reverts = 0;
      for (let i = 0; i === 0 || Date.now() - startedAt < CHAOS_MS; i++) {
        const path = `/etc/chaos/r${i}.conf`;
        const content = `r = ${i + 1}\n`;
        // Held 1 s in verify: faults land mid-apply too.
        const patchId = await mutate(() => createFilePatch(fleet, path, content, 1));
        const rolloutId = await mutate(() =>
          startFleetRollout(fleet, patchId, { waves: [1, '50%', '100%'], maxFailures: '100%', hostTimeoutSeconds: 15 }),
        );
        rounds.push({ rolloutId, path, content });
        await fleet.fleet.waitForState(rolloutId, ['succeeded', 'halted'], 120_000);
        if (i % 2 === 0) {
          await mutate(() => fleet.fleet.api.post(`/v1/rollouts/${rolloutId}/revert`));
          await fleet.fleet.waitForState(rolloutId, [...FINAL_REVERT_STATES], 120_000);
          reverts += 1;
        }
      }
      injectedWork = `${rounds.length} rollouts + ${reverts} reverts`;
      return rounds;
    };
    let injectedWork = '';
    const chaosRun = chaos();
    const rounds = await workload().finally(() => {
      workloadDone = true;
    });
    await chaosRun;
    // Healed: every link up and clean, every agent running.
    for (const id of partitioned) fleet.heal(id);
    for (const id of killed) fleet.startAgent(id);
    for (const id of degraded) fleet.restoreLink(id);

    const verdicts: Verdict[] = [];
    for (const round of rounds) {
      verdicts.push(
        await checkRollout(fleet, { rolloutId: round.rolloutId, changedContent: round.content, path: round.path }),
      );
    }
    const convergeMs = Date.now() - startedAt;
    const total = sumVerdicts(verdicts);
    const faults = [...injected].map(([fault, n]) => `${n} ${fault}`);
    await recordRow(
      rowOf('10 seeded chaos', HOSTS, [`seed ${random.seed}`, ...faults, injectedWork], total, convergeMs),
    );
    expect(total.problems).toEqual([]);
    expect(total).toMatchObject({ lost: 0, doubled: 0 });
    expect(total.orders).toBeGreaterThanOrEqual(rounds.length * HOSTS);
    expect([...injected.values()].reduce((n, k) => n + k, 0)).toBeGreaterThan(0);
  });
});
