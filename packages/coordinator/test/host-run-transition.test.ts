/**
 * The host-run state machine: one table, one writer. Every other test drives the engine; these call
 * `transitionHostRun` directly to show what it refuses.
 */
import { HOST_RUN_STATES } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { HOST_RUN_TRANSITIONS } from '../src/engine/host-run-states.js';
import { dispatchHostRuns, IllegalHostTransitionError, transitionHostRun } from '../src/engine/host-run-transition.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

/** A started rollout of offline hosts (policy wait), so their runs stay queued until a test moves them. */
async function queuedRun(hosts = ['host-1']) {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(hosts, { online: false });
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

describe('a dispatch burst (dispatchHostRuns)', () => {
  it('writes every queued run and its event, in the order given, with one dispatch instant', async () => {
    const { fleet, id } = await queuedRun(['host-1', 'host-2']);
    const runs = [await fleet.run(id, 'host-2'), await fleet.run(id, 'host-1')];
    const at = fleet.now;
    await fleet.store.transaction(
      async () =>
        await dispatchHostRuns(
          fleet,
          id,
          at,
          runs.map((run, i) => ({
            run,
            orderId: `ord_${i}`,
            deliveredAt: i === 0 ? at : null,
            event: { actor: 'system', data: { n: i } },
          })),
        ),
    );
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'dispatched', orderId: 'ord_0', deliveredAt: at });
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'dispatched', orderId: 'ord_1', deliveredAt: null });
    expect((await fleet.events(id)).slice(-2)).toMatchObject([
      { type: 'host.dispatched', hostId: 'host-2', fromState: 'queued', toState: 'dispatched', data: { n: 0 } },
      { type: 'host.dispatched', hostId: 'host-1', fromState: 'queued', toState: 'dispatched', data: { n: 1 } },
    ]);
  });

  it('one run whose row has moved on throws, and the transaction writes none of the others', async () => {
    const { fleet, id } = await queuedRun(['host-1', 'host-2']);
    const [one, two] = [await fleet.run(id, 'host-1'), await fleet.run(id, 'host-2')];
    // host-1 leaves the queue behind the burst's back; host-2 is still queued, and comes after it.
    await fleet.store.transaction(async () => await transitionHostRun(fleet, one, { to: 'skipped' }, null));
    const before = await fleet.dump();
    const burst = [one, two].map((run) => ({
      run,
      orderId: `ord_${run.hostId}`,
      deliveredAt: null,
      event: { actor: 'system' },
    }));
    await expect(
      fleet.store.transaction(async () => await dispatchHostRuns(fleet, id, fleet.now, burst)),
    ).rejects.toThrow(`host run host-1 of ${id}: queued → dispatched from a record that is stale`);
    expect(await fleet.dump()).toBe(before);
    expect((await fleet.run(id, 'host-2')).state).toBe('queued');
  });

  it('a host twice in one burst throws before anything is written', async () => {
    const { fleet, id } = await queuedRun();
    const run = await fleet.run(id, 'host-1');
    const before = await fleet.dump();
    const twice = ['ord_a', 'ord_b'].map((orderId) => ({
      run,
      orderId,
      deliveredAt: null,
      event: { actor: 'system' },
    }));
    await expect(
      fleet.store.transaction(async () => await dispatchHostRuns(fleet, id, fleet.now, twice)),
    ).rejects.toThrow(`host run host-1 of ${id}: queued → dispatched twice in one burst`);
    expect(await fleet.dump()).toBe(before);
  });

  it('a run that is not a queued run of the rollout by its record throws before anything is written', async () => {
    const { fleet, id } = await queuedRun();
    const run = await fleet.run(id, 'host-1');
    const before = await fleet.dump();
    const burst = (record: typeof run) => [
      { run: record, orderId: 'ord_x', deliveredAt: null, event: { actor: 'system' } },
    ];
    await expect(
      fleet.store.transaction(
        async () => await dispatchHostRuns(fleet, id, fleet.now, burst({ ...run, state: 'failed' })),
      ),
    ).rejects.toThrow(`host run host-1 of ${id}: failed → dispatched is not a queued run of ${id}`);
    await expect(
      fleet.store.transaction(async () => await dispatchHostRuns(fleet, 'ro_other', fleet.now, burst(run))),
    ).rejects.toThrow(`host run host-1 of ${id}: queued → dispatched is not a queued run of ro_other`);
    expect(await fleet.dump()).toBe(before);
  });

  it('an empty burst writes nothing', async () => {
    const { fleet, id } = await queuedRun();
    const before = await fleet.dump();
    await fleet.store.transaction(async () => await dispatchHostRuns(fleet, id, fleet.now, []));
    expect(await fleet.dump()).toBe(before);
  });
});

describe('the instant an order reached its host', () => {
  it('is the one a dispatch names: none for a host that is away', async () => {
    const { fleet, id, run } = await queuedRun();
    const away = { to: 'dispatched', orderId: 'ord_by_hand', at: fleet.now, deliveredAt: null } as const;
    await fleet.store.transaction(async () => await transitionHostRun(fleet, run, away, { actor: 'system' }));
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'dispatched', deliveredAt: null });
  });

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
