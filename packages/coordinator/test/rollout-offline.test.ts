import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { timedOutBeforeDelivery } from './support/rollout-scenarios.js';
import { SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- offline hosts and deadlines ---------------------------------------------------------------

describe('offline hosts', () => {
  it('policy skip: the host is skipped, not counted as a failure, and stays in the report', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    await fleet.addHosts(['host-3'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, offline: { mode: 'skip' } });
    await fleet.finishAll(['host-1', 'host-2']);

    expect(await fleet.state(id)).toBe('succeeded');
    expect(await fleet.run(id, 'host-3')).toMatchObject({
      state: 'skipped',
      countedFailure: false,
      errorCode: 'offline',
    });
    expect(fleet.sentOf('order.apply', 'host-3')).toEqual([]);
  });

  it('a burst that meets a host gone offline keeps its order in the audit trail: dispatched, skipped, dispatched', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2', 'host-3', 'host-4']);
    await fleet.advance(3_600 * SECOND); // past the coordinator's reconnect grace: a host away is offline for good
    const id = await fleet.launch({ waves: [1, '100%'], maxFailures: 0, offline: { mode: 'skip' } });
    // Planned while every host was online (in the order of their ids); host-3 leaves during the canary.
    fleet.disconnect('host-3');
    await fleet.finish('host-1');
    const secondWave = (await fleet.events(id))
      .filter((e) => e.hostId !== null && e.hostId !== 'host-1')
      .map((e) => `${e.hostId} ${e.type}`);
    expect(secondWave).toEqual(['host-2 host.dispatched', 'host-3 host.skipped', 'host-4 host.dispatched']);
  });

  it('policy fail: the host fails and counts against the budget', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, offline: { mode: 'fail' } });

    expect(await fleet.run(id, 'host-2')).toMatchObject({
      state: 'failed',
      countedFailure: true,
      errorCode: 'offline',
    });
    expect(await fleet.state(id)).toBe('halted');
  });

  it('policy wait: the order is kept and sent, with the same id, when the agent says hello', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1'], { online: false });
    const id = await fleet.launch({ waves: ['100%'], offline: { mode: 'wait', deliveryDeadlineSeconds: 300 } });
    const orderId = (await fleet.run(id, 'host-1')).orderId;
    expect(orderId).not.toBeNull();
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
    expect(fleet.sentOf('order.apply').filter((s) => s.delivered)).toEqual([]);

    await fleet.advance(200 * SECOND);
    await fleet.connect('host-1');

    const delivered = fleet.sentOf('order.apply', 'host-1').filter((s) => s.delivered);
    expect(delivered.map((s) => s.message.orderId)).toEqual([orderId]);
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('policy wait: a host not reached within deliveryDeadlineSeconds is timed_out', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    await fleet.addHosts(['host-3'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 1,
      hostTimeoutSeconds: 3600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 30 },
    });
    await fleet.finishAll(['host-1', 'host-2']);
    expect(await fleet.state(id)).toBe('running');

    await fleet.advance(30 * SECOND);
    expect((await fleet.run(id, 'host-3')).state).toBe('dispatched');
    await fleet.advance(1 * SECOND);

    expect(await fleet.run(id, 'host-3')).toMatchObject({ state: 'timed_out', countedFailure: true });
    expect((await fleet.run(id, 'host-3')).reason).toMatch(/not delivered within 30s/);
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('hostTimeoutSeconds: a host with no result in time is timed_out and its order is cancelled', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 120, maxFailures: 0 });
    await fleet.progress('host-1', 'applying');
    const orderId = (await fleet.run(id, 'host-1')).orderId;

    await fleet.advance(120 * SECOND);
    expect((await fleet.run(id, 'host-1')).state).toBe('applying');
    await fleet.advance(1 * SECOND);

    expect(await fleet.run(id, 'host-1')).toMatchObject({
      state: 'timed_out',
      errorCode: 'timed_out',
      countedFailure: true,
    });
    expect(fleet.agent('host-1').cancels).toEqual([orderId]);
    expect(await fleet.state(id)).toBe('halted');
  });

  it('hosts dispatched in one burst share its dispatch time, so they time out in the same sweep', async () => {
    const fleet = await SimulatedFleet.open();
    const hosts = ['host-1', 'host-2', 'host-3'];
    await fleet.addHosts(hosts);
    // A clock that moves on at every reading, as a real one does while a burst is written.
    fleet.clock.now = () => fleet.clock.ms++;
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 120, maxFailures: 0 });
    fleet.clock.now = () => fleet.clock.ms;
    const dispatched = await Promise.all(hosts.map(async (host) => (await fleet.run(id, host)).dispatchedAt));
    expect(new Set(dispatched).size).toBe(1);

    // One sweep just past the deadline: every host of the burst is timed out in it, none left in flight
    // behind a rollout the first one halted.
    await fleet.advance((dispatched[0] as number) + 120 * SECOND + 1 - fleet.clock.ms);
    for (const host of hosts) expect((await fleet.run(id, host)).state).toBe('timed_out');
    expect(await fleet.state(id)).toBe('halted');
  });

  it('a host whose agent died mid-apply past its timeout is changed: unknown, and its answer after the restart is an event', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 60, maxFailures: 0 });
    await fleet.progress('host-1', 'applying');
    fleet.disconnect('host-1'); // SIGKILL mid-dpkg: the package may be half-installed
    await fleet.advance(61 * SECOND);
    const view = new RolloutView(fleet.store, (h) => fleet.agent(h).online);
    const hostView = async () => (await view.status(id)).waves[0]?.hosts[0];
    expect(await hostView()).toMatchObject({ state: 'timed_out', changed: 'unknown' });

    // Restarted, the agent restores its snapshot and reports it in its hello.
    const entry = fleet.agent('host-1').openApply();
    if (!entry) throw new Error('host-1 holds no open apply');
    fleet.report('host-1', entry, 'failed', false);
    const restored = {
      orderId: entry.orderId,
      outcome: 'failed' as const,
      changed: false,
      finishedAt: '2030-01-07T12:02:00.000Z',
    };
    entry.result = { ...restored, errorCode: 'interrupted', reason: 'interrupted: …; reverted to the snapshot' };
    await fleet.connect('host-1');

    expect(await hostView()).toMatchObject({ state: 'timed_out', changed: false });
    const late = (await fleet.events(id)).filter((e) => e.type === 'host.late_result' && e.hostId === 'host-1');
    expect(late.map((e) => e.data)).toEqual([
      {
        outcome: 'failed',
        changed: false,
        errorCode: 'interrupted',
        reason: 'interrupted: …; reverted to the snapshot',
      },
    ]);
    // Said once: the same result again (a duplicate frame) adds nothing.
    fleet.engine.onOrderResult('host-1', entry.result);
    await fleet.engine.whenIdle();
    expect((await fleet.events(id)).filter((e) => e.type === 'host.late_result')).toHaveLength(1);
  });

  it('a host timed out before delivery is changed: unknown until its hello shows the order never reached it', async () => {
    const { fleet, id } = await timedOutBeforeDelivery();
    const view = new RolloutView(fleet.store, () => false);
    expect((await view.status(id)).waves[0]?.hosts[0]).toMatchObject({ state: 'timed_out', changed: 'unknown' });
    await fleet.connect('host-1');
    expect((await view.status(id)).waves[0]?.hosts[0]).toMatchObject({ state: 'timed_out', changed: false });
  });
});
