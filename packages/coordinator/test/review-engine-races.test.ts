/**
 * Adversarial review of the rollout engine under races (verbs racing results, retries racing
 * cancels): the real `RolloutEngine` over a real store through the simulated fleet.
 */
import { ErrorCode } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { refusal } from './support/refusal.js';
import { hosts, SimulatedFleet } from './support/simulated-fleet.js';

describe('retry racing the cancels of an abort', () => {
  it('a host whose cancel answers after the retry is not left cancelled under a succeeded rollout', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 2, bakeSeconds: 0 });
    await fleet.finish('host-1');
    // The operator aborts with host-2 mid-apply, then retries at once: the cancel is still on its way.
    await fleet.engine.abort(id, 'carol', 'wrong window');
    const err = await refusal(async () => await fleet.engine.retry(id, 'carol'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ state: 'aborted', inFlight: 1 });
    await fleet.engine.whenIdle();
    // host-2 honours the cancel the abort sent: it restores its snapshot and answers cancelled.
    await fleet.finish('host-2', 'cancelled', false);
    // Now the retry goes through and host-2 gets a new order, as a retry promises a cancelled host.
    await fleet.engine.retry(id, 'carol');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('succeeded');
    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'healthy' });
  });
});
