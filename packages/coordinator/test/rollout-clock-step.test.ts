/**
 * Specification of the rollout engine, by example: the coordinator's wall clock stepped (NTP after a
 * drift, a VM resumed and resynchronised, `date -s`) while rollouts run. A step moves `Date.now()`
 * and nothing else: the ticker still beats once a second, and only a second has passed.
 *
 * Every test here FAILS today (`it.fails`). The engine reads the time only through `EngineClock.now`,
 * the wall clock (`systemClock` in app.ts), and measures every duration on it: host deadlines from
 * `dispatchedAt` (deadline-sweeper.ts, `now - run.dispatchedAt`) and bakes against `bakeUntil`
 * (wave-advancer.ts, finishWave: `now < rollout.bakeUntil`). So a step forward is time that passed
 * and a step back is time that must pass again.
 * Proposed fix: give the engine `Clock.monotonicNow` too (the agent's health runner now measures on
 * it), and at each tick compare how far each clock moved since the last one; a difference beyond a
 * few seconds is a step, and the engine moves the instants of running work (`bake_until` of baking
 * rollouts, `dispatched_at` of hosts in flight, an analysis's last measurement) by it in one
 * transaction, with an audit event. Calendar decisions (maintenance windows, `startAt`) keep
 * following the wall clock, which the step corrected.
 */
import { describe, expect, it } from 'vitest';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

const HOUR = 3600 * SECOND;

describe('the coordinator wall clock steps', () => {
  it.fails('forward by an hour: hosts in flight for a second are not timed out', async () => {
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

  it.fails('forward by two hours: a one-hour bake does not end a second after it began', async () => {
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

  it.fails('back by a day: a ten-minute bake still ends ten minutes after it began', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600 });
    await fleet.finish('host-1');

    fleet.clock.stepWall(-24 * HOUR);
    for (let tick = 0; tick < 601; tick++) await fleet.advance(1 * SECOND);

    // Today: the rollout bakes until the wall clock is back where it was, a day and ten minutes on.
    expect(fleet.appliedHosts()).toEqual(hosts(3));
  });
});
