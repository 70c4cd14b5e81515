/**
 * Adversarial review of the rollout engine under races (verbs racing results, retries racing
 * cancels): the real `RolloutEngine` over a real store through the simulated fleet.
 */
import { ErrorCode, type MaintenanceWindow } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { canStartWave } from '../src/schedule/maintenance-window.js';
import { refusal } from './support/refusal.js';
import { haltedWithWaveRevert } from './support/rollout-scenarios.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

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

describe('a late result after a halt', () => {
  it('autoRevert wave: a host in flight at the halt that times out, then turns out changed, is reverted like its wave', async () => {
    // host-1 healthy, host-2 fails: halted, host-1 reverted (autoRevert wave); host-3 is still in flight.
    const { fleet, id } = await haltedWithWaveRevert();
    await fleet.finishRevert('host-1');
    // host-3's answer is lost on a partition: it times out (a failure) with its order unanswered.
    fleet.disconnect('host-3');
    await fleet.advance(601 * SECOND);
    expect((await fleet.run(id, 'host-3')).state).toBe('timed_out');
    // It comes back: its journal says the apply ended healthy, the host carries the change.
    await fleet.finish('host-3');
    await fleet.connect('host-3');
    // The halted wave's other changed hosts were reverted; this one is too.
    expect(await fleet.run(id, 'host-3')).toMatchObject({ state: 'reverting', changed: true, countedFailure: true });
    // One revert order (sent as it commits, and again after the hello that did not list it: one id).
    expect(new Set(fleet.sentOf('order.revert', 'host-3').map((s) => s.message.orderId)).size).toBe(1);
    await fleet.finishRevert('host-3');
    expect((await fleet.store.hostRuns.forRollout(id)).filter((r) => r.changed)).toEqual([]);
    expect(await fleet.state(id)).toBe('halted');
  });
});

describe('a late bake failure after the rollout succeeded', () => {
  // The agents' bake watches (order.watch: bakeSeconds from the wave's pass) outlive the coordinator's
  // bake when it is promoted, or end a moment after its normal end: at `succeeded` the coordinator ends
  // them with order.cancel (on an agent, a cancel of a done order only ends its watch). A failure its
  // watch saw before the cancel reached it is still the host's truth: recorded, not counted against a
  // budget that no longer applies, and said on the rollout's record.
  const cancelsOf = (fleet: SimulatedFleet) =>
    fleet.sentOf('order.cancel').map((s) => [s.agentId, s.message.orderId] as const);

  it('promote ends the final bake: each host of the rollout still watching is told its watch is over', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], bakeSeconds: 3600, maxFailures: 0 });
    const one = await fleet.finish('host-1');
    const two = await fleet.finish('host-2');
    expect(fleet.sentOf('order.watch').map((s) => s.agentId)).toEqual(['host-1', 'host-2']);
    expect(cancelsOf(fleet)).toEqual([]);
    await fleet.engine.promote(id, 'bob');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('succeeded');
    expect(cancelsOf(fleet)).toEqual([
      ['host-1', one],
      ['host-2', two],
    ]);
  });

  it("the bake's normal end tells them too; a rollout without a bake, whose agents watch nothing, sends no cancel", async () => {
    const baked = await SimulatedFleet.open();
    await baked.addHosts(hosts(1));
    const id = await baked.launch({ waves: ['100%'], bakeSeconds: 60 });
    const orderId = await baked.finish('host-1');
    await baked.advance(61 * SECOND);
    expect(await baked.state(id)).toBe('succeeded');
    expect(cancelsOf(baked)).toEqual([['host-1', orderId]]);

    const unbaked = await SimulatedFleet.open();
    await unbaked.addHosts(hosts(1));
    const quick = await unbaked.launch({ waves: ['100%'], bakeSeconds: 0 });
    await unbaked.finish('host-1');
    expect(await unbaked.state(quick)).toBe('succeeded');
    expect(cancelsOf(unbaked)).toEqual([]);
  });

  it('only hosts whose watch may still run: not a failed host, nor a wave whose bake ended long before', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60, maxFailures: 1 });
    await fleet.finish('host-1');
    await fleet.advance(61 * SECOND); // the canary's bake ends: wave 2 is sent its orders
    // Wave 2 takes two hours; the canary's watch (60 s from its wave's pass) is long over.
    fleet.now += 2 * 3600 * SECOND;
    const two = await fleet.finish('host-2');
    await fleet.finish('host-3', 'failed', false);
    await fleet.engine.promote(id, 'bob');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('succeeded');
    expect(cancelsOf(fleet)).toEqual([['host-2', two]]);
  });

  it('a host away when the rollout succeeded is told its watch is over at its hello, while the watch may still run', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], bakeSeconds: 3600, maxFailures: 0 });
    const one = await fleet.finish('host-1');
    const two = await fleet.finish('host-2');
    await fleet.finish('host-3');
    fleet.disconnect('host-2');
    fleet.disconnect('host-3');
    await fleet.engine.promote(id, 'bob');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('succeeded');
    const delivered = () =>
      fleet.sent.filter((s) => s.message.type === 'order.cancel' && s.delivered).map((s) => [s.agentId, s.message]);
    expect(delivered()).toEqual([['host-1', { type: 'order.cancel', orderId: one }]]);

    // host-2 is back within its watch (an hour's bake): the cancel owed to it goes after its hello, once.
    fleet.now += 30 * 60 * SECOND;
    await fleet.connect('host-2');
    await fleet.connect('host-2');
    expect(delivered()).toEqual([
      ['host-1', { type: 'order.cancel', orderId: one }],
      ['host-2', { type: 'order.cancel', orderId: two }],
    ]);
    // host-3 comes back after its watch could have run (the bake and ten minutes' slack): nothing is owed.
    fleet.now += 45 * 60 * SECOND;
    await fleet.connect('host-3');
    expect(delivered().map(([agentId]) => agentId)).toEqual(['host-1', 'host-2']);
    expect(fleet.sentOf('order.cancel', 'host-3').filter((s) => s.delivered)).toEqual([]);
  });

  it("a failure its watch saw before the cancel arrived is the host's truth, not counted, and said on the record", async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], bakeSeconds: 3600, maxFailures: 0 });
    const orderId = await fleet.finish('host-1');
    await fleet.finish('host-2');
    await fleet.engine.promote(id, 'bob');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('succeeded');
    // host-1's watch saw health fail just before the cancel reached it: it restored its snapshot and says so.
    fleet.now += 2 * SECOND;
    await fleet.reportAgain('host-1', orderId, 'failed', false);
    const run = await fleet.run(id, 'host-1');
    const rollout = await fleet.rollout(id);
    // No contradiction: the budget (maxFailures 0) was the rollout's, which was over; the host's run
    // says what it carries (failed, reverted itself), uncounted, and the rollout's own record says so.
    // `stateReason` stays the reason of its last transition (none): the warning is its own event
    // (rollout.late_failure, which webhooks carry too) and one of the status's `warnings`.
    const contradiction = rollout.state === 'succeeded' && run.state === 'failed' && run.countedFailure && !run.changed;
    const cancelledWatch = fleet.sentOf('order.cancel', 'host-1').length > 0;
    expect({ contradiction, cancelledWatch, stateReason: rollout.stateReason }).toEqual({
      contradiction: false,
      cancelledWatch: true,
      stateReason: null,
    });
    expect(run).toMatchObject({ state: 'failed', changed: false, countedFailure: false, errorCode: 'health_failed' });
    const events = await fleet.events(id);
    expect(events.find((e) => e.type === 'host.failed')).toMatchObject({
      hostId: 'host-1',
      fromState: 'healthy',
      data: { during: 'bake', after: 'succeeded', counted: false },
    });
    const late = events.filter((e) => e.type === 'rollout.late_failure');
    expect(late).toMatchObject([
      { hostId: null, data: { hostId: 'host-1', orderId, outcome: 'failed', changed: false } },
    ]);
    expect(await fleet.state(id)).toBe('succeeded');
    const view = new RolloutView(fleet.store, () => true);
    const status = await view.status(id);
    expect(status).toMatchObject({ failures: 0, warnings: [expect.stringMatching(/host-1/)] });
    // The summary reads the failed hosts on its own (by state, not every host) and says the same.
    expect((await view.summary(id)).warnings).toEqual(status.warnings);
  });
});

describe('the failure budget inside one dispatch burst', () => {
  it('offline mode fail: once the hosts failed at dispatch exceed the budget, nobody else in the burst gets an order', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(4));
    const id = await fleet.launch({
      waves: [1, '100%'],
      maxParallel: 4,
      maxFailures: 0,
      offline: { mode: 'fail', deliveryDeadlineSeconds: 300 },
    });
    // host-2 and host-3 drop off while the canary applies.
    fleet.disconnect('host-2');
    fleet.disconnect('host-3');
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('halted');
    // maxFailures 0: the first failure (host-2, offline at dispatch) halts; "nothing new is sent" after it.
    expect(await fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'failed',
      'host-3': 'queued',
      'host-4': 'queued',
    });
    expect(fleet.appliedHosts()).toEqual(['host-1']);
  });

  it('maxFailuresPerWave: the same within a wave', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(5));
    const id = await fleet.launch({
      waves: [1, '100%'],
      maxParallel: 4,
      maxFailures: 4,
      maxFailuresPerWave: 1,
      offline: { mode: 'fail', deliveryDeadlineSeconds: 300 },
    });
    fleet.disconnect('host-2');
    fleet.disconnect('host-3');
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.appliedHosts()).toEqual(['host-1']);
    expect((await fleet.hostStates(id))['host-4']).toBe('queued');
  });
});

describe('an operator and a maintenance window', () => {
  /** 02:00–03:00 UTC daily (the fleet's clock starts at noon, outside it). */
  const WINDOW: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
  const OPENS = Date.parse('2030-01-08T02:00:00Z');

  // A rollout the window paused could not be paused by a person (409: it is paused already), and the
  // window's opening resumed it by itself: the operator who wanted it held had only abort.
  it('an operator can hold a rollout the window paused, and the next window does not resume it', async () => {
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], window: WINDOW });
    expect((await fleet.rollout(id)).stateReason).toBe('maintenance window closed');
    // The operator learns of a problem and wants nothing to start tonight.
    const held = await fleet.engine.pause(id, 'carol');
    expect({ state: held.state, reason: held.stateReason }).toEqual({ state: 'paused', reason: 'paused by operator' });
    const recorded = (await fleet.events(id)).filter((e) => e.type === 'rollout.paused').at(-1);
    expect(recorded).toMatchObject({ actor: 'carol', fromState: 'paused', toState: 'paused' });
    expect(recorded?.data).toEqual({ reason: 'paused by operator', was: 'maintenance window closed' });
    fleet.now = OPENS;
    await fleet.engine.tick();
    await fleet.engine.whenIdle();
    expect({ state: await fleet.state(id), sent: fleet.appliedHosts() }).toEqual({ state: 'paused', sent: [] });
    // A second pause is refused as before: it is the operator's own pause now.
    expect(await refusal(() => fleet.engine.pause(id, 'carol'))).toMatchObject({ code: ErrorCode.illegalTransition });
    // Resumed by a person, inside the window: the hosts get their orders.
    await fleet.engine.resume(id, 'carol');
    await fleet.engine.whenIdle();
    expect(fleet.appliedHosts().sort()).toEqual(['host-1', 'host-2']);
  });
});

describe('a per-host revert racing the last wave', () => {
  it('a host of an earlier wave still reverting keeps the rollout from succeeding (and its warning is not lost)', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'] });
    await fleet.finish('host-1'); // the canary: wave 1 passes, wave 2 (host-2, host-3) is dispatched
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2', 'host-3']);
    // An operator reverts the canary by hand while the last wave is in flight.
    await fleet.engine.revertHost(id, 'host-1', 'bob');
    await fleet.engine.whenIdle();
    await fleet.finish('host-2');
    await fleet.finish('host-3');
    const whileReverting = await fleet.state(id);
    await fleet.finishRevert('host-1');
    const rollout = await fleet.rollout(id);
    expect({
      whileReverting,
      state: rollout.state,
      warned: rollout.stateReason?.includes('reverted by hand') ?? false,
    }).toEqual({ whileReverting: 'running', state: 'succeeded', warned: true });
  });
});
