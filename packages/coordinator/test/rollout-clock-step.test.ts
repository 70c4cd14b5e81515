/**
 * Specification of the rollout engine, by example: the coordinator's wall clock stepped (NTP after a
 * drift, a VM resumed and resynchronised, `date -s`) while rollouts run. A step moves `Date.now()`
 * and nothing else: the ticker still beats once a second, and only a second has passed.
 *
 * The engine keeps its instants on the wall clock and measures durations as their differences (host
 * deadlines from `dispatchedAt`/`deliveredAt`, bakes against `bakeUntil`, analyses from their last
 * measurement). At each tick it compares how far the wall clock moved with how much time passed on the
 * monotonic clock (`Clock.monotonicNow`); a difference beyond a few seconds is a step, and the instants
 * of running work move by it in one transaction (clock-step.ts), with a `rollout.clock_stepped` event.
 * Calendar decisions (maintenance windows, `startAt`) keep following the wall clock, which the step
 * corrected.
 */
import { describe, expect, it } from 'vitest';
import { hosts, SECOND, SimulatedFleet, T0 } from './support/simulated-fleet.js';

const HOUR = 3600 * SECOND;

describe('the coordinator wall clock steps', () => {
  it('forward by an hour: hosts in flight for a second are not timed out', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 600, maxFailures: 1 });
    await fleet.progress('host-1', 'applying');

    fleet.clock.stepWall(HOUR);
    await fleet.advance(1 * SECOND);

    // Today: all three timed_out at once ("no result within 600s"), the rollout halted and every
    // order cancelled — the agents restore their snapshots.
    expect(await fleet.hostStates(id)).toEqual({
      'host-1': 'applying',
      'host-2': 'dispatched',
      'host-3': 'dispatched',
    });
    expect(fleet.sentOf('order.cancel')).toEqual([]);
  });

  it('forward by two hours: a one-hour bake does not end a second after it began', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 3600 });
    await fleet.finish('host-1');

    fleet.clock.stepWall(2 * HOUR);
    await fleet.advance(1 * SECOND);

    // Today: wave 2 is sent its orders 1 s into the canary's one-hour bake.
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    expect((await fleet.rollout(id)).currentWave).toBe(0);
  });

  it('back by a day: a ten-minute bake still ends ten minutes after it began', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600 });
    await fleet.finish('host-1');

    fleet.clock.stepWall(-24 * HOUR);
    for (let tick = 0; tick < 601; tick++) await fleet.advance(1 * SECOND);

    // Today: the rollout bakes until the wall clock is back where it was, a day and ten minutes on.
    expect(fleet.appliedHosts()).toEqual(hosts(3));
  });

  it('back by a day: a host in flight is still timed out at its deadline, not a day later', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 600 });
    await fleet.progress('host-1', 'applying');

    fleet.clock.stepWall(-24 * HOUR);
    await fleet.advance(600 * SECOND);
    expect((await fleet.run(id, 'host-1')).state).toBe('applying');
    await fleet.advance(1 * SECOND);
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'timed_out', reason: 'no result within 600s' });
  });

  it('is on the record of each rollout whose running work moved, and a drift of a few seconds is not a step', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'] });

    fleet.clock.stepWall(4 * SECOND);
    await fleet.advance(1 * SECOND);
    fleet.clock.stepWall(HOUR);
    await fleet.advance(1 * SECOND);

    const stepped = (await fleet.events(id)).filter((event) => event.type === 'rollout.clock_stepped');
    expect(stepped.map((event) => [event.actor, event.data])).toEqual([['system', { stepMs: HOUR }]]);
    // Dispatched at T0, it moved with the step of an hour: not with the drift of 4 s.
    expect((await fleet.run(id, 'host-1')).dispatchedAt).toBe(T0 + HOUR);
  });
});
