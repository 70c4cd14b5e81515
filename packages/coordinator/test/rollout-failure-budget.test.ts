import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- failure budget ----------------------------------------------------------------------------

describe('the failure budget', () => {
  it('as a count: halts when failures exceed it, not when they reach it', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [4, '100%'], maxFailures: 1 });

    await fleet.finish('host-1', 'failed');
    expect(await fleet.state(id)).toBe('running');
    await fleet.finish('host-2', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toBe('failure budget exceeded: 2 failed, 1 tolerated');
  });

  it('after a halt, in-flight hosts finish and are recorded, and nothing new is sent', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [4, '100%'], maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    const applies = fleet.sentOf('order.apply').length;

    await fleet.finish('host-2');
    await fleet.finish('host-3', 'failed');
    await fleet.advance(60 * SECOND);

    expect(await fleet.hostStates(id)).toMatchObject({
      'host-1': 'failed',
      'host-2': 'healthy',
      'host-3': 'failed',
      'host-4': 'dispatched',
      'host-5': 'queued',
      'host-6': 'queued',
    });
    expect((await fleet.run(id, 'host-2')).changed).toBe(true);
    expect(fleet.sentOf('order.apply')).toHaveLength(applies);
    expect(await fleet.state(id)).toBe('halted');
  });

  it('as a percent of the rollout: 25% of 8 hosts tolerates 2 and halts on the 3rd', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(8);
    await fleet.addHosts(ids);
    const { id } = await fleet.create({ waves: ['100%'], maxFailures: '25%' });
    expect((await new RolloutView(fleet.store, () => true).plan(id)).haltsOn).toBe('halts on the 3rd failure');
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();

    await fleet.finish('host-1', 'failed');
    await fleet.finish('host-2', 'failed');
    expect(await fleet.state(id)).toBe('running');
    await fleet.finish('host-3', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toBe('failure budget exceeded: 3 failed, 2 tolerated');
  });

  it('maxFailuresPerWave: each wave has its own limit, within the rollout budget', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [3, '100%'], maxFailures: 10, maxFailuresPerWave: 1 });

    await fleet.finish('host-1', 'failed');
    await fleet.finishAll(['host-2', 'host-3']);
    expect((await fleet.rollout(id)).currentWave).toBe(1);
    expect(await fleet.state(id)).toBe('running');

    await fleet.finish('host-4', 'failed');
    expect(await fleet.state(id)).toBe('running');
    await fleet.finish('host-5', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toBe('wave 2 failure budget exceeded: 2 failed, 1 tolerated');
  });

  it('maxFailuresPerWave as a share: of the wave it is in, not of the rollout nor of another wave', async () => {
    const fleet = await SimulatedFleet.open();
    // Zero-padded, so that the waves take them in this order: host-01…host-04, then host-05…host-12.
    const ids = Array.from({ length: 12 }, (_, i) => `host-${String(i + 1).padStart(2, '0')}`);
    await fleet.addHosts(ids);
    // Waves of 4 and 8 hosts: half of the second wave is 4 failures (the first wave's half is 2, the rollout's 6).
    const id = await fleet.launch({ waves: [4, '100%'], maxFailures: 20, maxFailuresPerWave: '50%' });
    await fleet.finishAll(ids.slice(0, 4));
    expect((await fleet.rollout(id)).currentWave).toBe(1);

    for (const host of ids.slice(4, 8)) await fleet.finish(host, 'failed');
    expect(await fleet.state(id)).toBe('running');
    await fleet.finish('host-09', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toBe('wave 2 failure budget exceeded: 5 failed, 4 tolerated');
  });

  it('maxFailures 0 halts on the first failure', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });
});

describe('a rollout nobody took', () => {
  it('every host skipped as unhealthy before the patch: halted, not succeeded, and a retry sends again', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(2);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 0 });
    await fleet.finishAll(ids, 'skipped'); // the agents' baseline: health_failed, not counted
    await fleet.finishAll(ids, 'skipped');
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'skipped', countedFailure: false });
    expect(await fleet.rollout(id)).toMatchObject({
      state: 'halted',
      stateReason: 'no host took the patch: 2 skipped (2 unhealthy before patch)',
    });

    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishAll(ids);
    await fleet.finishAll(ids);
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('the tally names each state once, summed over the waves, in the order of their names', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(3);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 1 });
    await fleet.finish('host-1', 'skipped');
    await fleet.finish('host-2', 'failed');
    await fleet.finish('host-3', 'skipped');
    expect(await fleet.rollout(id)).toMatchObject({
      state: 'halted',
      stateReason: 'no host took the patch: 1 failed, 2 skipped (2 unhealthy before patch)',
    });
  });

  it('one host healthy and the others skipped still succeeds: the skips are in the report', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    await fleet.finishAll(['host-2', 'host-3'], 'skipped');
    expect(await fleet.state(id)).toBe('succeeded');
  });
});
