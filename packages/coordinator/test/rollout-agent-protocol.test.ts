/**
 * A package set or source change never reaches an agent whose protocol predates it (it would refuse
 * the order: its change schema is strict). The plan names such a host, a start fails it with the
 * reason and sends it nothing, and one that was offline at dispatch fails when its hello shows it old.
 */
import { HEALTH_TOLERANCE_PROTOCOL, PACKAGE_SETS_PROTOCOL, storedPatch } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { fleetWithPackagePatches, ONE_PACKAGE_PATCH, SET_PATCH, SOURCE_PATCH } from './support/package-patches.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { hosts, SimulatedFleet, T0 } from './support/simulated-fleet.js';

const OLD = PACKAGE_SETS_PROTOCOL - 1;

describe('package sets and agents of an older protocol', () => {
  it('the plan names the old agent; start fails it with the reason and sends it nothing; the others apply', async () => {
    const fleet = await fleetWithPackagePatches();
    await fleet.addHosts(hosts(3), { online: false });
    fleet.agent('host-2').protocolVersion = OLD;
    for (const id of hosts(3)) await fleet.connect(id);

    const { id } = await fleet.create({ patchId: SET_PATCH, maxFailures: 1, waves: ['100%'] });
    const view = new RolloutView(
      fleet.store,
      () => true,
      (hostId) => fleet.agent(hostId).protocolVersion,
    );
    expect((await view.plan(id)).incompatible).toEqual([
      { hostId: 'host-2', reason: expect.stringMatching(/speaks protocol 3; .* needs protocol 4: upgrade the agent/) },
    ]);

    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    expect(fleet.appliedHosts().sort()).toEqual(['host-1', 'host-3']);
    const failed = await fleet.run(id, 'host-2');
    expect(failed).toMatchObject({ state: 'failed', countedFailure: true, errorCode: 'precondition_failed' });
    expect(failed.reason).toMatch(/upgrade the agent/);
    expect((await fleet.events(id)).find((e) => e.hostId === 'host-2' && e.type === 'host.failed')?.data).toMatchObject(
      {
        reason: 'agent_protocol_too_old',
      },
    );

    await fleet.finishAll(['host-1', 'host-3']);
    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'failed', 'host-3': 'healthy' });
  });

  it('a source change dispatched to an offline host fails it when it says hello speaking an older protocol', async () => {
    const fleet = await fleetWithPackagePatches();
    await fleet.addHosts(hosts(2));
    fleet.disconnect('host-2');
    const id = await fleet.launch({
      patchId: SOURCE_PATCH,
      offline: { mode: 'wait' },
      maxFailures: 1,
      waves: ['100%'],
    });
    expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');

    fleet.agent('host-2').protocolVersion = OLD;
    await fleet.connect('host-2');
    expect(fleet.sentOf('order.apply', 'host-2').filter((s) => s.delivered)).toEqual([]);
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'failed', errorCode: 'precondition_failed' });
  });

  it('the one-package form and file changes still go to a protocol 1 agent', async () => {
    const fleet = await fleetWithPackagePatches();
    await fleet.addHosts(hosts(2), { online: false });
    for (const id of hosts(2)) fleet.agent(id).protocolVersion = 1;
    for (const id of hosts(2)) await fleet.connect(id);
    await fleet.launch({ target: { hostIds: ['host-1'] } });
    await fleet.launch({ patchId: ONE_PACKAGE_PATCH, target: { hostIds: ['host-2'] } });
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
  });
});

describe('health tolerance and agents of an older protocol', () => {
  const TOLERANT = 'pat_tolerant';

  it('a patch with failAfterConsecutive or bakeTolerance fails a protocol 5 agent with the reason and sends it nothing', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.store.transaction(
      async () =>
        await fleet.store.patches.insert(
          storedPatch(
            {
              ...SAMPLE_PATCH_SPEC,
              health: {
                ...SAMPLE_PATCH_SPEC.health,
                failAfterConsecutive: 3,
                bakeTolerance: { consecutiveFailures: 2 },
              },
            },
            { id: TOLERANT, createdBy: 'alice', createdAt: new Date(T0).toISOString() },
          ),
        ),
    );
    await fleet.addHosts(hosts(2), { online: false });
    fleet.agent('host-2').protocolVersion = HEALTH_TOLERANCE_PROTOCOL - 1;
    for (const id of hosts(2)) await fleet.connect(id);
    const id = await fleet.launch({ patchId: TOLERANT, maxFailures: 1, waves: ['100%'] });
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    const sent = fleet.sentOf('order.apply', 'host-1')[0]?.message;
    expect(sent?.type === 'order.apply' && sent.health).toMatchObject({
      failAfterConsecutive: 3,
      bakeTolerance: { consecutiveFailures: 2 },
    });
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'failed', errorCode: 'precondition_failed' });
    expect((await fleet.run(id, 'host-2')).reason).toMatch(
      /speaks protocol 5; a health policy with failAfterConsecutive or bakeTolerance needs protocol 6/,
    );
  });
});
