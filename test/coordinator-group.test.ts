import type { EventPage, RolloutStatus } from '@fleetpatch/shared';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { CoordinatorGroupFleet } from './support/coordinator-group-fleet.js';
import { checkRollout } from './support/fault-checker.js';
import { hostsOf, sampleFilePatch } from './support/fleet-harness.js';
import { type PostgresCluster, postgresCluster, startPostgresCluster } from './support/postgres-cluster.js';
import { describeNeeding } from './support/requirements.js';

// Three coordinator processes on one PostgreSQL, twenty agents spread over them (each knows all
// three). A rollout runs through (a) a SIGKILL of the coordinator driving it, mid-wave; (b) a SIGKILL
// of another coordinator, whose agents move; (c) a PostgreSQL restart. Every host applies its order
// exactly once, the coordinator side dispatches each host once, and every coordinator left shows the
// same rollout at the end.

const PATH = '/etc/group/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = 20;
const LEASE_MS = 1500;
/** Each test starts three coordinators and twenty agents and rolls out through a fault: minutes on a loaded 2-core runner. */
const GROUP_TEST_MS = 240_000;

describeNeeding(postgresCluster, 'a coordinator group: three coordinators on PostgreSQL, twenty agents', () => {
  let cluster: PostgresCluster;
  let fleet: CoordinatorGroupFleet | undefined;

  beforeAll(async () => {
    cluster = await startPostgresCluster();
  }, 120_000);
  afterAll(async () => await cluster?.stop());
  afterEach(async () => {
    await fleet?.teardown();
    fleet = undefined;
  });

  async function startGroup(name: string): Promise<CoordinatorGroupFleet> {
    fleet = await CoordinatorGroupFleet.start({
      name,
      storeUrl: await cluster.createDatabase(),
      coordinators: 3,
      hosts: HOSTS,
      path: PATH,
      initial: OLD,
      leaseMs: LEASE_MS,
    });
    return fleet;
  }

  /** A five-wave rollout whose orders each stay a second in verify: long enough to be cut mid-wave. */
  async function startRollout(group: CoordinatorGroupFleet, via: number): Promise<string> {
    const api = group.apiOf(via);
    const patch = await api.post<{ id: string }>(
      '/v1/patches',
      sampleFilePatch(PATH, NEW, {
        health: {
          checks: [{ kind: 'file', name: 'config present', path: PATH }],
          intervalSeconds: 0.5,
          minHealthySeconds: 1,
          healthyDeadlineSeconds: 30,
        },
      }),
    );
    const created = await api.post<RolloutStatus>('/v1/rollouts', {
      patchId: patch.id,
      target: { hostIds: group.hostIds },
      waves: [2, '25%', '50%', '100%'],
      maxParallel: 4,
      requiredApprovals: 0,
    });
    await api.post(`/v1/rollouts/${created.rollout.id}/start`);
    return created.rollout.id;
  }

  /** Waits until the rollout is in wave `wave` (0-based) or later, with hosts of it in flight. */
  async function midWave(group: CoordinatorGroupFleet, rolloutId: string, wave: number): Promise<void> {
    await waitFor(
      `rollout ${rolloutId} in wave ${wave + 1} with hosts in flight`,
      async () => {
        const status = await group.api.get<RolloutStatus>(`/v1/rollouts/${rolloutId}`);
        return (
          status.rollout.currentWave >= wave &&
          hostsOf(status).some((h) => ['dispatched', 'delivered', 'applying', 'verifying'].includes(h.state))
        );
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
  }

  /** Every host applied once, dispatched once, and every coordinator left tells the same story. */
  async function expectExactlyOnceAndOneView(group: CoordinatorGroupFleet, rolloutId: string): Promise<void> {
    const verdict = await checkRollout(group, { rolloutId, path: PATH, changedContent: NEW });
    expect(verdict.problems).toEqual([]);
    expect(verdict).toMatchObject({ orders: HOSTS, appliedOnce: HOSTS, lost: 0, doubled: 0 });
    const views = await group.statusEverywhere(rolloutId);
    const hostStates = views.map((v) =>
      hostsOf(v)
        .map((h) => `${h.hostId} ${h.state} ${h.orderId}`)
        .sort(),
    );
    for (const states of hostStates) expect(states).toEqual(hostStates[0]);
    expect(views.map((v) => v.rollout.state)).toEqual(views.map(() => 'succeeded'));
    const trails = await Promise.all(
      group.live().map((i) => group.apiOf(i).get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`)),
    );
    for (const trail of trails) expect(trail.events.map((e) => e.seq)).toEqual(trails[0]?.events.map((e) => e.seq));
  }

  it(
    '(a) the driving coordinator is SIGKILLed mid-wave: another takes the rollout over and finishes it',
    async () => {
      const group = await startGroup('ga');
      const rolloutId = await startRollout(group, 0);
      await midWave(group, rolloutId, 1);
      const driver = await group.driverOf(rolloutId);
      expect(driver).toBeDefined();
      const killedAt = Date.now();
      await group.killCoordinator(driver as number);
      let takeoverMs = 0;
      await waitFor(
        'another coordinator drives the rollout',
        async () => {
          const next = await group.driverOf(rolloutId);
          if (next === undefined || next === driver) return false;
          takeoverMs = Date.now() - killedAt;
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 20 },
      );
      // Within a few lease periods, as the README promises.
      expect(takeoverMs).toBeLessThan(4 * LEASE_MS + 2000);
      console.log(`takeover after the driver's SIGKILL: ${takeoverMs} ms (lease ${LEASE_MS} ms)`);
      await group.waitForState(rolloutId, ['succeeded'], 90_000);
      await expectExactlyOnceAndOneView(group, rolloutId);
    },
    GROUP_TEST_MS,
  );

  it(
    "(b) an agent's coordinator is SIGKILLed mid-wave: its agents move to another, the rollout finishes",
    async () => {
      const group = await startGroup('gb');
      const rolloutId = await startRollout(group, 0);
      await midWave(group, rolloutId, 1);
      const driver = await group.driverOf(rolloutId);
      const other = [0, 1, 2].find((i) => i !== driver) as number;
      await group.killCoordinator(other);
      // Its agents (host i starts on coordinator i mod 3) come back through the two left.
      await group.waitOnline(group.hostIds, 30_000);
      await group.waitForState(rolloutId, ['succeeded'], 90_000);
      await expectExactlyOnceAndOneView(group, rolloutId);
    },
    GROUP_TEST_MS,
  );

  it(
    '(c) PostgreSQL restarts mid-wave: every coordinator reconnects and the rollout finishes',
    async () => {
      const group = await startGroup('gc');
      const rolloutId = await startRollout(group, 1);
      await midWave(group, rolloutId, 1);
      cluster.restart();
      await group.waitForState(rolloutId, ['succeeded'], 90_000);
      await expectExactlyOnceAndOneView(group, rolloutId);
    },
    GROUP_TEST_MS,
  );
});
