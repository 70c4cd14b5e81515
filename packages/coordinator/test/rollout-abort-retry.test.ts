/**
 * Specification of the rollout engine, by example: abort and retry. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode } from '@fleetpatch/shared';
import { describe, expect, it, vi } from 'vitest';
import { refusal } from './support/refusal.js';
import { haltedWithWaveRevert, timedOutBeforeDelivery } from './support/rollout-scenarios.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- abort and retry ---------------------------------------------------------------------------

describe('abort', () => {
  it('is sticky: in-flight hosts get order.cancel, nothing new is sent, resume is refused', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(4);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2 });
    const inFlight = await Promise.all(['host-1', 'host-2'].map(async (h) => (await fleet.run(id, h)).orderId));

    await fleet.engine.abort(id, 'carol', 'wrong ticket');
    await fleet.engine.whenIdle();

    expect(await fleet.state(id)).toBe('aborted');
    expect((await fleet.rollout(id)).stateReason).toBe('wrong ticket');
    expect([...fleet.agent('host-1').cancels, ...fleet.agent('host-2').cancels]).toEqual(inFlight);

    // host-1 had already finished when the cancel arrived; host-2 stopped.
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'cancelled');
    await fleet.advance(3600 * SECOND);
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    expect(await fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'cancelled',
      'host-3': 'queued',
      'host-4': 'queued',
    });

    const err = await refusal(async () => await fleet.engine.resume(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ state: 'aborted' });
    expect(await fleet.state(id)).toBe('aborted');
  });

  it('retry requeues failed, timed_out, cancelled and skipped hosts with new order ids and runs again', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2', 'host-3', 'host-4']);
    await fleet.addHosts(['host-5'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 10,
      hostTimeoutSeconds: 60,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed');
    await fleet.progress('host-3', 'applying');
    await fleet.engine.abort(id, 'alice', null);
    await fleet.finish('host-4', 'cancelled');
    await fleet.advance(61 * SECOND); // host-3 does not answer the cancel in time
    await fleet.finish('host-3', 'cancelled', false); // its late answer: the order is settled
    expect(await fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'failed',
      'host-3': 'timed_out',
      'host-4': 'cancelled',
      'host-5': 'skipped',
    });
    const before = Object.fromEntries(
      await Promise.all(
        ['host-1', 'host-2', 'host-3', 'host-4'].map(async (h) => [h, (await fleet.run(id, h)).orderId]),
      ),
    );

    await fleet.connect('host-5');
    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();

    expect(await fleet.state(id)).toBe('running');
    expect((await fleet.run(id, 'host-1')).orderId).toBe(before['host-1']); // healthy: left alone
    for (const h of ['host-2', 'host-3', 'host-4']) {
      const again = await fleet.run(id, h);
      expect(again.state).toBe('dispatched');
      expect(again.orderId).not.toBe(before[h]);
      expect(fleet.agent(h).applyIds()).toEqual([before[h], again.orderId]);
    }
    expect((await fleet.run(id, 'host-5')).state).toBe('dispatched');
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.running' && e.actor === 'bob')?.data).toMatchObject(
      {
        requeued: ['host-2', 'host-3', 'host-4', 'host-5'],
      },
    );

    await fleet.finishAll(['host-2', 'host-3', 'host-4', 'host-5']);
    expect(await fleet.state(id)).toBe('succeeded');
    expect(await fleet.store.hostRuns.failures(id)).toBe(0);
  });

  it('retry leaves a timed_out host whose agent is offline as it is (still counted), says why, and records its late result', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1, hostTimeoutSeconds: 60 });
    await fleet.finish('host-1', 'failed');
    await fleet.progress('host-2', 'applying');
    const oldOrder = (await fleet.run(id, 'host-2')).orderId;
    fleet.disconnect('host-2'); // partitioned while applying: it may yet carry the change
    await fleet.advance(61 * SECOND);
    expect((await fleet.run(id, 'host-2')).state).toBe('timed_out');
    expect(await fleet.state(id)).toBe('halted');

    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();

    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    expect(await fleet.run(id, 'host-2')).toMatchObject({
      state: 'timed_out',
      orderId: oldOrder,
      countedFailure: true,
    });
    expect(await fleet.store.hostRuns.failures(id)).toBe(1);
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.running' && e.actor === 'bob')?.data).toEqual({
      requeued: ['host-1'],
      notRequeued: [{ hostId: 'host-2', reason: expect.stringMatching(/has not answered/) }],
    });

    // Its old order did apply; the result arrives with its hello and is recorded, not dropped.
    await fleet.finish('host-2', 'healthy', true);
    await fleet.connect('host-2');
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'timed_out', orderId: oldOrder, changed: true });
    expect((await fleet.events(id)).filter((e) => e.type === 'host.late_result' && e.hostId === 'host-2')).toHaveLength(
      1,
    );
  });

  it('retry requeues a timed_out host once its earlier order has answered (here: the cancel its hello brought)', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, hostTimeoutSeconds: 60 });
    fleet.disconnect('host-1');
    await fleet.advance(61 * SECOND);
    expect(await fleet.state(id)).toBe('halted');
    await fleet.connect('host-1'); // its hello lists the order unfinished: it is told to cancel it

    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('timed_out'); // not yet: the order has not answered

    await fleet.finish('host-1', 'cancelled', false);
    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('a host that stays online but times out is not re-ordered before its first order answers, so a revert still finds its change', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, hostTimeoutSeconds: 60 });
    await fleet.progress('host-1', 'verifying');
    await fleet.advance(61 * SECOND);
    expect(await fleet.state(id)).toBe('halted');
    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('timed_out');

    await fleet.finish('host-1', 'healthy', true); // it had finished just before the cancel landed
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'timed_out', changed: true });
    await fleet.engine.abort(id, 'alice', null);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert', 'host-1')).toHaveLength(1);
  });

  it('retry requeues a timed_out host whose order never reached it (its hello does not list the order)', async () => {
    const { fleet, id } = await timedOutBeforeDelivery();
    expect((await fleet.run(id, 'host-1')).state).toBe('timed_out');
    expect(await fleet.state(id)).toBe('halted');
    await fleet.connect('host-1');
    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('a hello settles a timed-out order it does not list once: the next hellos write nothing for it', async () => {
    const { fleet, id } = await timedOutBeforeDelivery();
    const settles = vi.spyOn(fleet.store.hostRuns, 'markAnswered');
    await fleet.connect('host-1');
    expect(settles).toHaveBeenCalledTimes(1);
    expect((await fleet.run(id, 'host-1')).answered).toBe(true);
    await fleet.connect('host-1');
    await fleet.connect('host-1');
    expect(settles).toHaveBeenCalledTimes(1);
  });

  it('retry is refused while a host of the rollout is reverting, and allowed once the revert is in', async () => {
    const { fleet, id } = await haltedWithWaveRevert();
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.run(id, 'host-1')).state).toBe('reverting');
    const before = await fleet.dump();

    const err = await refusal(async () => await fleet.engine.retry(id, 'bob'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.message).toMatch(/while 1 host\(s\) of this rollout are reverting/);
    expect(await fleet.dump()).toBe(before);

    await fleet.finishRevert('host-1');
    await fleet.finish('host-3');
    await fleet.finishRevert('host-3');
    await fleet.engine.retry(id, 'bob');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('running');
  });

  it('abort is sticky across a disconnect: an order the agent still works on is cancelled when it says hello', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'snapshotted');
    const orderId = (await fleet.run(id, 'host-1')).orderId as string;
    fleet.disconnect('host-1');

    await fleet.engine.abort(id, 'carol', null);
    await fleet.engine.whenIdle();
    expect(fleet.agent('host-1').cancels).toEqual([]); // the cancel went nowhere

    await fleet.connect('host-1');
    expect(fleet.agent('host-1').cancels).toEqual([orderId]);
  });

  it('abort is sticky across a coordinator crash too, and a timed-out order is cancelled again on hello', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2, maxFailures: 10, hostTimeoutSeconds: 60 });
    await fleet.progress('host-1', 'applying');
    fleet.disconnect('host-1');
    await fleet.advance(30 * SECOND);
    await fleet.finish('host-2'); // frees its slot: host-3 gets its order 30 s after host-1
    await fleet.advance(31 * SECOND); // host-1 times out; the cancel sent then goes nowhere
    expect((await fleet.run(id, 'host-1')).state).toBe('timed_out');
    await fleet.progress('host-3', 'applying');
    const orders = await Promise.all(['host-1', 'host-3'].map(async (h) => (await fleet.run(id, h)).orderId));
    fleet.lostOnTheWire.add('host-3');
    await fleet.engine.abort(id, 'carol', null); // host-3's cancel is lost as the coordinator dies
    await fleet.restart();
    fleet.lostOnTheWire.clear();

    await fleet.connect('host-1');
    await fleet.connect('host-3');
    expect(fleet.agent('host-1').cancels).toEqual([orders[0]]);
    expect(fleet.agent('host-3').cancels).toEqual([orders[1]]);
  });

  it('a halted rollout lets its in-flight hosts finish: no cancel when one says hello', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0 });
    await fleet.progress('host-2', 'applying');
    fleet.disconnect('host-2');
    await fleet.finish('host-1', 'failed');
    expect(await fleet.state(id)).toBe('halted');

    await fleet.connect('host-2');
    expect(fleet.agent('host-2').cancels).toEqual([]);
    await fleet.finish('host-2');
    expect((await fleet.run(id, 'host-2')).state).toBe('healthy');
  });
});
