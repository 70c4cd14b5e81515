/**
 * Specification of the rollout engine, by example: what a coordinator that was down does with time once it is back.
 *
 * A real coordinator ticks within a second of starting (`tickIntervalMs`, 1000), while its agents
 * come back over up to 30 s (their reconnect backoff: `backoffMaxMs`, full jitter). So in these tests
 * the clock moves over the downtime before `restart()` (the old process saw none of it), the first
 * tick runs before any agent has said hello, and the agents connect after it: the order of a real
 * restart, where the existing restart tests connect every agent before the next tick.
 */
import { describe, expect, it } from 'vitest';
import { hosts, RESTART_GRACE_MS, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

const MINUTE = 60 * SECOND;

describe('a coordinator back from a downtime', () => {
  // Before the reconnect grace (engine/reconnect-grace.ts): deadline-sweeper.ts measured every deadline
  // from dispatchedAt on the wall clock and swept on the first tick, before the agents that finished while the coordinator was down have
  // reconnected to say so. Both hosts are timed_out (counted failures), the rollout halts, their
  // orders are cancelled, and their `healthy` answers arrive as late results.
  it('does not time out hosts that finished while it was down before their agents reconnect', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 600, maxFailures: 0 });
    expect(fleet.appliedHosts()).toEqual(hosts(2));

    // Down for 15 minutes (an upgrade of its machine); meanwhile both hosts finish healthy, and
    // journal their results to report on reconnect.
    fleet.now += 15 * MINUTE;
    await fleet.restart();
    await fleet.finishAll(hosts(2));
    await fleet.advance(1 * SECOND); // the first tick, before any agent is back
    for (const h of hosts(2)) await fleet.connect(h);

    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'healthy' });
    expect(await fleet.state(id)).toBe('succeeded');
  });

  // Before the reconnect grace, for the same reason: an order committed for a host that was online (policy wait)
  // "was not delivered within 300 s (host offline)" when it is the coordinator that was away.
  it('does not call a host offline for the time the coordinator itself was down', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    // The process dies between committing host-2's order and the frame leaving (crash safety's case).
    fleet.lostOnTheWire.add('host-2');
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0 });
    fleet.lostOnTheWire.clear();
    await fleet.finish('host-1');

    fleet.now += 10 * MINUTE;
    await fleet.restart();
    await fleet.advance(1 * SECOND);
    for (const h of hosts(2)) await fleet.connect(h);

    expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');
    expect(fleet.agent('host-2').openApply()).toBeDefined();
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  // Before the reconnect grace: the bake of wave 1 ended while the coordinator was down, so its first
  // tick passed it and committed wave 2's orders (policy wait) before the canary's agent has reconnected to report what
  // its bake watch saw: the canary failed its health during the bake and restored its snapshot. host-2
  // reconnects first and is changed by a rollout whose canary had already failed (maxFailures 0).
  it('does not start the next wave before the baking wave has reported what its bake saw', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600, maxFailures: 0 });
    const canaryOrder = await fleet.finish('host-1');
    await fleet.advance(300 * SECOND);

    // Down for 10 minutes; meanwhile the canary's bake watch sees health fail: its agent restores the
    // snapshot and journals `failed`, to be reported on reconnect.
    fleet.now += 10 * MINUTE;
    await fleet.restart();
    await fleet.reportAgain('host-1', canaryOrder, 'failed', false);
    await fleet.advance(1 * SECOND);
    await fleet.connect('host-2');
    await fleet.connect('host-3');
    await fleet.connect('host-1');

    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });

  // Before the reconnect grace: at the first tick no agent is connected yet, so policy skip marks every queued host
  // of the wave `skipped` ("host offline at dispatch") — hosts that are up and reconnect a few seconds
  // later — and the rollout succeeds without them. (Policy fail counts each as a failure and halts.)
  it('does not skip hosts as offline before they could reconnect', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({
      waves: [1, '100%'],
      bakeSeconds: 60,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });
    await fleet.finish('host-1');

    fleet.now += 2 * MINUTE;
    await fleet.restart();
    await fleet.advance(1 * SECOND);
    for (const h of hosts(3)) await fleet.connect(h);

    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'dispatched', 'host-3': 'dispatched' });
  });

  // The start time passed while the coordinator was down. Started at its first tick, before any agent
  // was back, the canary was planned among hosts that all looked offline (the plan puts online hosts
  // first only when some are), and policy skip then skipped it and every other host of wave 1 at once.
  // A scheduled start now waits for the reconnect grace: its canary is planned among the hosts that came back.
  it('starts a rollout whose start time passed meanwhile without skipping its canary', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const { id } = await fleet.create({
      waves: [1, '100%'],
      startAt: new Date(fleet.now + 10 * MINUTE).toISOString(),
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });

    fleet.now += 15 * MINUTE;
    await fleet.restart();
    await fleet.advance(1 * SECOND);
    for (const h of hosts(3)) await fleet.connect(h);
    expect(await fleet.state(id)).toBe('scheduled');

    await fleet.advance(RESTART_GRACE_MS);
    expect(await fleet.state(id)).toBe('running');
    expect((await fleet.run(id, 'host-1')).state).toBe('dispatched');
  });
});
