/**
 * The host-run state machine: one table, one writer. Every other test drives the engine; these call
 * `transitionHostRun` directly to show what it refuses.
 */
import { HOST_RUN_STATES } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { HOST_RUN_TRANSITIONS } from '../src/engine/host-run-states.js';
import { IllegalHostTransitionError, transitionHostRun } from '../src/engine/host-run-transition.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

/** A started rollout of one offline host (policy wait), so its run stays queued until a test moves it. */
async function queuedRun() {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1'], { online: false });
  const { id } = await fleet.create({ offline: { mode: 'wait', deliveryDeadlineSeconds: 60 } });
  await fleet.engine.start(id, 'alice'); // dispatch waits for the next turn: the run is still queued here
  return { fleet, id, run: await fleet.run(id, 'host-1') };
}

describe('host-run transitions', () => {
  it('the table lists every state, and only states, as sources and targets', () => {
    expect(Object.keys(HOST_RUN_TRANSITIONS).sort()).toEqual([...HOST_RUN_STATES].sort());
    for (const targets of Object.values(HOST_RUN_TRANSITIONS)) {
      for (const to of targets) expect(HOST_RUN_STATES).toContain(to);
    }
  });

  it('a move the table does not allow throws, and writes neither the row nor an event', async () => {
    const { fleet, id, run } = await queuedRun();
    expect(run.state).toBe('queued');
    const before = await fleet.dump();

    await expect(
      fleet.store.transaction(
        async () => await transitionHostRun(fleet, run, { to: 'healthy', changed: true }, { actor: 'system' }),
      ),
    ).rejects.toThrow(IllegalHostTransitionError);
    await expect(
      fleet.store.transaction(
        async () => await transitionHostRun(fleet, run, { to: 'healthy', changed: true }, { actor: 'system' }),
      ),
    ).rejects.toThrow(`host run host-1 of ${id}: queued → healthy is not in HOST_RUN_TRANSITIONS`);
    expect(await fleet.dump()).toBe(before);
    expect((await fleet.run(id, 'host-1')).state).toBe('queued');
  });

  it('a move from a stale record (the row has moved on) throws and writes nothing', async () => {
    const { fleet, id, run } = await queuedRun();
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    const before = await fleet.dump();

    await expect(
      fleet.store.transaction(
        async () =>
          await transitionHostRun(
            fleet,
            run,
            { to: 'dispatched', orderId: 'ord_again', at: fleet.now, deliveredAt: fleet.now },
            { actor: 'system' },
          ),
      ),
    ).rejects.toThrow(/stale/);
    expect(await fleet.dump()).toBe(before);
  });

  it('a legal move writes the row and its event with both states', async () => {
    const { fleet, id, run } = await queuedRun();
    await fleet.store.transaction(
      async () =>
        await transitionHostRun(
          fleet,
          run,
          { to: 'skipped', reason: 'by hand' },
          { actor: 'bob', data: { why: 'test' } },
        ),
    );
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'skipped', reason: 'by hand' });
    expect((await fleet.events(id)).at(-1)).toMatchObject({
      type: 'host.skipped',
      hostId: 'host-1',
      actor: 'bob',
      fromState: 'queued',
      toState: 'skipped',
      data: { why: 'test' },
    });
  });

  it('names the event after the state reached unless told otherwise, with no data unless given', async () => {
    const { fleet, id, run } = await queuedRun();
    await fleet.store.transaction(
      async () => await transitionHostRun(fleet, run, { to: 'skipped' }, { actor: 'system' }),
    );
    expect((await fleet.events(id)).at(-1)).toMatchObject({ type: 'host.skipped', data: null });
  });

  it('a move without an event (its rollout’s event records it) writes the row and no event', async () => {
    const { fleet, id, run } = await queuedRun();
    const events = (await fleet.events(id)).length;
    await fleet.store.transaction(async () => await transitionHostRun(fleet, run, { to: 'skipped' }, null));
    expect((await fleet.run(id, 'host-1')).state).toBe('skipped');
    expect(await fleet.events(id)).toHaveLength(events);
  });
});

describe('the instant an order reached its host', () => {
  it('is none at a dispatch to a host that is away; its first reported phase records it, later phases keep it', async () => {
    const { fleet, id } = await queuedRun();
    await fleet.engine.whenIdle();
    const dispatched = await fleet.run(id, 'host-1');
    expect(dispatched).toMatchObject({ state: 'dispatched', deliveredAt: null });

    fleet.now += 7_000;
    const reachedAt = fleet.now;
    await fleet.store.transaction(async () => await transitionHostRun(fleet, dispatched, { to: 'applying' }, null));
    const applying = await fleet.run(id, 'host-1');
    expect(applying.deliveredAt).toBe(reachedAt);

    fleet.now += 5_000;
    await fleet.store.transaction(async () => await transitionHostRun(fleet, applying, { to: 'verifying' }, null));
    expect((await fleet.run(id, 'host-1')).deliveredAt).toBe(reachedAt);
  });

  it('is none for a run that ends without its agent having reported (timed out, failed at dispatch)', async () => {
    for (const to of ['timed_out', 'failed'] as const) {
      const { fleet, id } = await queuedRun();
      await fleet.engine.whenIdle();
      const dispatched = await fleet.run(id, 'host-1');
      fleet.now += 1_000;
      await fleet.store.transaction(
        async () => await transitionHostRun(fleet, dispatched, { to, reason: 'test' }, null),
      );
      expect(await fleet.run(id, 'host-1')).toMatchObject({ state: to, deliveredAt: null });
    }
  });
});
