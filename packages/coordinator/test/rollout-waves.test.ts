import { describe, expect, it, vi } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { hosts, SECOND, SimulatedFleet, T0 } from './support/simulated-fleet.js';

// ---- waves and concurrency ---------------------------------------------------------------------

describe('waves', () => {
  it('resolve as planned before anything runs (37 hosts, [1, "10%", "50%", "100%"] → [1, 3, 18, 15])', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(Array.from({ length: 37 }, (_, i) => `host-${String(i + 1).padStart(2, '0')}`));
    const { id } = await fleet.create({ waves: [1, '10%', '50%', '100%'], maxFailures: 3 });
    const plan = await new RolloutView(fleet.store, () => true).plan(id);
    expect(plan.frozen).toBe(false);
    expect(plan.waveSizes).toEqual([1, 3, 18, 15]);
    expect(plan.haltsOn).toBe('halts on the 4th failure');

    await fleet.engine.start(id, 'alice');
    const frozen = await new RolloutView(fleet.store, () => true).plan(id);
    expect(frozen.frozen).toBe(true);
    expect(frozen.waveSizes).toEqual([1, 3, 18, 15]);
    expect(frozen.waves.flatMap((w) => w.hosts)).toEqual(plan.waves.flatMap((w) => w.hosts));
  });

  it('run one after another: no host of the next wave gets an order before the current wave has passed', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(5);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: [1, 2, '100%'] });

    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.finish('host-1');
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    await fleet.finish('host-2');
    expect(fleet.appliedHosts()).toHaveLength(3);
    await fleet.finish('host-3');
    expect(fleet.appliedHosts()).toEqual(ids);
    await fleet.finishAll(ids);

    expect(await fleet.state(id)).toBe('succeeded');
    const order = (await fleet.events(id))
      .filter((e) => e.type === 'host.dispatched' || e.type === 'wave.passed')
      .map((e) => (e.type === 'wave.passed' ? `passed:${e.data?.wave}` : `dispatch:${e.hostId}`));
    expect(order).toEqual([
      'dispatch:host-1',
      'passed:0',
      'dispatch:host-2',
      'dispatch:host-3',
      'passed:1',
      'dispatch:host-4',
      'dispatch:host-5',
      'passed:2',
    ]);
  });

  it('keep at most maxParallel hosts in flight, and a finished host frees its slot at once', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2 });

    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    await fleet.finish('host-2');
    // No tick, no clock: the freed slot is filled by the result itself.
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);

    while ((await fleet.state(id)) === 'running') {
      const open = ids.find((h) => fleet.agent(h).openApply());
      if (!open) throw new Error('running with nothing in flight');
      await fleet.finish(open);
    }
    expect(await fleet.state(id)).toBe('succeeded');
    expect(fleet.appliedHosts()).toEqual(ids);
    expect(fleet.maxAppliesInFlight).toBe(2);
  });

  it('look at a full wave once per result: a burst that filled every slot asks for no second look', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(6);
    await fleet.addHosts(ids);
    await fleet.launch({ waves: ['100%'], maxParallel: 2 });
    const looks = vi.spyOn(fleet.store.hostRuns, 'countInWave');
    await fleet.finish('host-1');
    // The result's commit looks (one slot free), the burst fills it with host-3's order, and the wave
    // is full: a second look would only find that out again.
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect(looks).toHaveBeenCalledTimes(1);
  });

  it('look again after a burst that left a slot empty: a host skipped as offline frees its slot for the next', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(5));
    const id = await fleet.launch({ waves: [1, '100%'], maxParallel: 2, offline: { mode: 'skip' } });
    // Heard since the coordinator started, then gone: judged offline when its turn comes.
    fleet.disconnect('host-3');
    await fleet.finish('host-1');
    // The second wave's first burst sends host-2's order and skips host-3: its slot goes to host-4.
    expect(await fleet.run(id, 'host-3')).toMatchObject({ state: 'skipped', errorCode: 'offline' });
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-4']);
  });
});

// ---- bake --------------------------------------------------------------------------------------

describe('bake', () => {
  it('the next wave starts only after bakeSeconds', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60 });
    await fleet.finish('host-1');
    expect((await fleet.rollout(id)).bakeUntil).toBe(T0 + 60 * SECOND);
    expect((await new RolloutView(fleet.store, () => true).status(id)).waves[0]?.phase).toBe('baking');

    await fleet.advance(59 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    await fleet.advance(1 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect((await fleet.rollout(id)).currentWave).toBe(1);
  });

  it("tells the wave's healthy hosts to keep watching their health for the whole bake", async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60 });
    await fleet.finish('host-1');
    const [watch] = fleet.sentOf('order.watch', 'host-1');
    expect(watch?.message).toEqual({
      type: 'order.watch',
      orderId: (await fleet.run(id, 'host-1')).orderId,
      seconds: 60,
    });
    expect(fleet.sentOf('order.watch')).toHaveLength(1);
  });

  it('promote ends the bake early', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 3600 });
    await fleet.finish('host-1');

    await fleet.engine.promote(id, 'bob');
    await fleet.engine.whenIdle();

    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.promoted')).toMatchObject({
      actor: 'bob',
      data: { wave: 0 },
    });
  });

  it('a failure reported during the bake counts against the budget and halts', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60, maxFailures: 0 });
    const orderId = await fleet.finish('host-1');
    expect((await fleet.run(id, 'host-1')).state).toBe('healthy');

    // The agent's bake watch saw health fail after it had reported healthy, and reverted itself.
    await fleet.reportAgain('host-1', orderId, 'failed', false);

    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'failed', countedFailure: true, changed: false });
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.events(id)).find((e) => e.type === 'host.failed')?.data).toMatchObject({ during: 'bake' });
    await fleet.advance(120 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });
});
