/**
 * What the coordinator makes of each thing an agent says: hellos, progress and results, each turned
 * into host-run state, audit rows and answers (acks, resends, cancels). The real engine and store,
 * driven through the simulated fleet; agents' words are sent as the hub would pass them on.
 */
import {
  type HealthCheckResult,
  type OrderOutcome,
  type OrderPhase,
  type OrderReport,
  revertStatementFor,
} from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { ProgressNotice } from '../src/store/store.js';
import { capturingLog } from './support/capturing-log.js';
import { signedFleet } from './support/signed-fleet.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';
import { statementSigner } from './support/statement-signer.js';

const at = (fleet: SimulatedFleet) => new Date(fleet.now).toISOString();

/** One host with its apply order in flight (dispatched, not yet answered). */
async function inFlight(input: Parameters<SimulatedFleet['launch']>[0] = {}) {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['h-1', 'h-2']);
  const id = await fleet.launch({ target: { hostIds: ['h-1'] }, ...input });
  const orderId = (await fleet.run(id, 'h-1')).orderId as string;
  return { fleet, id, orderId };
}

/** The host reports `outcome` for `orderId` directly, as its connection would. */
async function report(
  fleet: SimulatedFleet,
  hostId: string,
  orderId: string,
  outcome: OrderOutcome,
  extra: { changed?: boolean; errorCode?: 'health_failed'; reason?: string; health?: HealthCheckResult[] } = {},
) {
  fleet.engine.onOrderResult(hostId, {
    orderId,
    outcome,
    changed: extra.changed ?? outcome === 'healthy',
    finishedAt: at(fleet),
    ...(extra.errorCode ? { errorCode: extra.errorCode } : {}),
    ...(extra.reason ? { reason: extra.reason } : {}),
    ...(extra.health ? { health: extra.health } : {}),
  });
  await fleet.engine.whenIdle();
}

/** `hostId` says hello listing exactly `orders`, whatever its simulated journal holds. */
async function helloListing(fleet: SimulatedFleet, hostId: string, orders: OrderReport[]) {
  fleet.engine.onAgentHello(hostId, { ...fleet.agent(hostId).hello(0), orders });
  await fleet.engine.whenIdle();
}

async function progress(fleet: SimulatedFleet, hostId: string, orderId: string, phase: OrderPhase, message?: string) {
  fleet.engine.onOrderProgress(hostId, { type: 'order.progress', orderId, phase, ...(message ? { message } : {}) });
  await fleet.engine.whenIdle();
}

describe('hellos', () => {
  it('write an agent.connected row when the agent is news, and count the rest', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1']);
    await fleet.connect('h-1');
    await fleet.connect('h-1');
    const rows = (await fleet.store.allEvents(0, 100)).filter((e) => e.type === 'agent.connected');
    expect(rows).toMatchObject([
      { hostId: 'h-1', actor: 'h-1', data: { agentVersion: 'sim', reconnectsCoalesced: 0 } },
    ]);
  });

  it('bring back an order in flight that the agent does not list, with the same id', async () => {
    const { fleet, orderId } = await inFlight();
    fleet.hello('h-1', 0);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.apply', 'h-1').map((s) => s.message.orderId)).toEqual([orderId, orderId]);
  });

  it('do not send again an order the agent lists', async () => {
    const { fleet } = await inFlight();
    await fleet.connect('h-1');
    expect(fleet.sentOf('order.apply', 'h-1')).toHaveLength(1);
  });

  it('send an order in flight again while the rollout is paused, but not once it is halted', async () => {
    const { fleet, id } = await inFlight();
    await fleet.engine.pause(id, 'alice');
    fleet.hello('h-1', 0);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.apply', 'h-1')).toHaveLength(2);

    const halted = await inFlight({ target: { hostIds: ['h-1', 'h-2'] }, maxFailures: 0, waves: ['100%'] });
    await halted.fleet.finish('h-2', 'failed');
    expect(await halted.fleet.state(halted.id)).toBe('halted');
    halted.fleet.hello('h-1', 0);
    await halted.fleet.engine.whenIdle();
    expect(halted.fleet.sentOf('order.apply', 'h-1')).toHaveLength(1);
  });

  it('bring back a revert order in flight that the agent does not list, and only that', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1']);
    const id = await fleet.launch();
    await fleet.finish('h-1');
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    const revertOrderId = (await fleet.run(id, 'h-1')).revertOrderId;

    await fleet.connect('h-1');
    expect(fleet.sentOf('order.revert', 'h-1')).toHaveLength(1);
    fleet.hello('h-1', 0);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert', 'h-1').map((s) => s.message.orderId)).toEqual([revertOrderId, revertOrderId]);
    expect(fleet.sentOf('order.apply', 'h-1')).toHaveLength(1);
  });

  it('settle a timed-out order the agent never heard of, and only that', async () => {
    const { fleet, id } = await inFlight({ hostTimeoutSeconds: 10 });
    await fleet.advance(11 * SECOND);
    expect(await fleet.run(id, 'h-1')).toMatchObject({ state: 'timed_out', answered: false });

    await fleet.connect('h-1'); // it lists the order: still working on it
    expect((await fleet.run(id, 'h-1')).answered).toBe(false);
    fleet.hello('h-1', 0); // a hello without it: the order never arrived
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'h-1')).answered).toBe(true);
  });

  it('bring back the revert of a host reverted on its own while its rollout runs, never its apply', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1', 'h-2']);
    const id = await fleet.launch({ waves: [1, '100%'] });
    await fleet.finish('h-1'); // its wave passes; h-2's order is in flight, the rollout runs
    await fleet.engine.revertHost(id, 'h-1', 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('running');
    const revertOrderId = (await fleet.run(id, 'h-1')).revertOrderId;

    fleet.hello('h-1', 0);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert', 'h-1').map((s) => s.message.orderId)).toEqual([revertOrderId, revertOrderId]);
    expect(fleet.sentOf('order.apply', 'h-1')).toHaveLength(1);
  });
});

describe('hellos and cancels', () => {
  it('cancel nothing the agent still works on while its rollout runs or is paused', async () => {
    const { fleet, id } = await inFlight();
    await fleet.connect('h-1'); // it lists the order, not done
    await fleet.engine.pause(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.connect('h-1');
    expect(fleet.sentOf('order.cancel')).toEqual([]);

    // What the same hello brings once the rollout is aborted: the order is cancelled.
    await fleet.engine.abort(id, 'alice', null);
    await fleet.engine.whenIdle();
    const cancelsAtAbort = fleet.sentOf('order.cancel', 'h-1').length;
    await fleet.connect('h-1');
    expect(fleet.sentOf('order.cancel', 'h-1')).toHaveLength(cancelsAtAbort + 1);
  });

  it('cancel no order that is over: done, or carrying its result, whatever the state of its host', async () => {
    // h-2's order keeps the rollout running, so it can be aborted below.
    const { fleet, id, orderId } = await inFlight({ target: { hostIds: ['h-1', 'h-2'] }, waves: ['100%'] });
    await report(fleet, 'h-1', orderId, 'healthy');
    const result = { orderId, outcome: 'healthy' as const, changed: true, finishedAt: at(fleet) };
    for (const orders of [
      [{ orderId, phase: 'done' as const, result }],
      [{ orderId, phase: 'done' as const }],
      [{ orderId, phase: 'verifying' as const, result }],
    ]) {
      await helloListing(fleet, 'h-1', orders);
    }
    await fleet.engine.abort(id, 'alice', null); // not even once nothing may finish
    await fleet.engine.whenIdle();
    await helloListing(fleet, 'h-1', [{ orderId, phase: 'done' }]);
    expect((await fleet.run(id, 'h-1')).state).toBe('healthy');
    expect(fleet.sentOf('order.cancel', 'h-1')).toEqual([]);
    expect(fleet.sentOf('order.cancel', 'h-2')).toHaveLength(1); // the abort's, for its order in flight
  });

  it('cancel no order of another host, even one its own host is told to cancel', async () => {
    const { fleet, id, orderId } = await inFlight();
    await fleet.engine.abort(id, 'alice', null);
    await fleet.engine.whenIdle();
    await helloListing(fleet, 'h-2', [{ orderId, phase: 'applying' }]);
    expect(fleet.sentOf('order.cancel', 'h-2')).toEqual([]);
    await helloListing(fleet, 'h-1', [{ orderId, phase: 'applying' }]);
    expect(fleet.sentOf('order.cancel', 'h-1').at(-1)?.message.orderId).toBe(orderId);
  });

  it('log a revert that cannot be sent again (its signed statement gone) and record the hello all the same', async () => {
    const alice = statementSigner();
    const bob = statementSigner();
    const { log, lines } = capturingLog();
    const { fleet, id, statement } = await signedFleet(['h-1'], { alice, bob }, { log });
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishAll(['h-1']);
    const revert = revertStatementFor(statement, null, { now: new Date(fleet.now), validForSeconds: 3600 });
    await fleet.engine.signRevert(id, alice.submission(revert), 'alice');
    await fleet.engine.signRevert(id, bob.submission(revert), 'bob');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'h-1')).state).toBe('reverting');
    // A database edited by hand, or restored from an older backup: the revert statement is gone.
    await fleet.editByHand(
      "DELETE FROM statement_signatures WHERE digest IN (SELECT digest FROM statements WHERE kind = 'revert'); DELETE FROM statements WHERE kind = 'revert'",
    );

    fleet.hello('h-1', 0);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert', 'h-1')).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'revert order not resent')).toMatchObject([
      { level: 50, rolloutId: id, hostId: 'h-1' },
    ]);
    expect((await fleet.store.allEvents(0, 1000)).filter((e) => e.type === 'agent.connected').length).toBeGreaterThan(
      0,
    );
  });
});

describe('progress', () => {
  const phases: [OrderPhase, string][] = [
    ['accepted', 'delivered'],
    ['baseline', 'delivered'],
    ['snapshotted', 'snapshotted'],
    ['applying', 'applying'],
    ['applied', 'applying'],
    ['verifying', 'verifying'],
  ];

  /** The live notices (`host.progress`, not audit rows) the store publishes after each commit. */
  function notices(fleet: SimulatedFleet): ProgressNotice[] {
    const seen: ProgressNotice[] = [];
    fleet.store.onProgress((notice) => seen.push(notice));
    return seen;
  }

  it.each(phases)(
    '%s moves a dispatched host to %s and tells live readers, with the agent’s message, writing no audit row',
    async (phase, state) => {
      const { fleet, id, orderId } = await inFlight();
      const told = notices(fleet);
      const events = (await fleet.events(id)).length;
      await progress(fleet, 'h-1', orderId, phase, 'step 1 of 2');
      expect((await fleet.run(id, 'h-1')).state).toBe(state);
      expect(told).toEqual([
        { type: 'host.progress', rolloutId: id, hostId: 'h-1', state, at: at(fleet), message: 'step 1 of 2' },
      ]);
      expect(await fleet.events(id)).toHaveLength(events);
    },
  );

  it('tells no message when the agent says nothing more', async () => {
    const { fleet, id, orderId } = await inFlight();
    const told = notices(fleet);
    await progress(fleet, 'h-1', orderId, 'applying');
    expect(told).toEqual([{ type: 'host.progress', rolloutId: id, hostId: 'h-1', state: 'applying', at: at(fleet) }]);
  });

  it('never moves a host backwards, nor to where it is', async () => {
    const { fleet, id, orderId } = await inFlight();
    await progress(fleet, 'h-1', orderId, 'verifying');
    const told = notices(fleet);
    const before = await fleet.dump();
    for (const phase of ['applying', 'verifying', 'accepted'] as const) await progress(fleet, 'h-1', orderId, phase);
    expect((await fleet.run(id, 'h-1')).state).toBe('verifying');
    expect(await fleet.dump()).toBe(before);
    expect(told).toEqual([]);
  });

  it('coalesces a burst: one notice per host with its latest phase, and none once its result is in the same burst', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1', 'h-2']);
    const id = await fleet.launch({ target: { hostIds: ['h-1', 'h-2'] }, waves: ['100%'] });
    const [one, two] = (await Promise.all(
      ['h-1', 'h-2'].map(async (host) => (await fleet.run(id, host)).orderId as string),
    )) as [string, string];
    const told = notices(fleet);
    const events = (await fleet.events(id)).length;
    for (const phase of ['accepted', 'snapshotted', 'applying'] as const) {
      fleet.engine.onOrderProgress('h-1', { type: 'order.progress', orderId: one, phase });
      fleet.engine.onOrderProgress('h-2', { type: 'order.progress', orderId: two, phase });
    }
    fleet.engine.onOrderProgress('h-1', { type: 'order.progress', orderId: one, phase: 'verifying' });
    await report(fleet, 'h-1', one, 'healthy');
    expect((await fleet.run(id, 'h-1')).state).toBe('healthy');
    expect((await fleet.run(id, 'h-2')).state).toBe('applying');
    expect(told).toEqual([{ type: 'host.progress', rolloutId: id, hostId: 'h-2', state: 'applying', at: at(fleet) }]);
    // The result is the one audit row the burst wrote (besides what the freed slot dispatched).
    expect((await fleet.events(id)).slice(events).filter((e) => e.hostId === 'h-1')).toMatchObject([
      { type: 'host.healthy', fromState: 'dispatched', toState: 'healthy' },
    ]);
  });

  it('tells nothing when the burst’s transaction rolls back', async () => {
    const { fleet, id, orderId } = await inFlight();
    const told = notices(fleet);
    await expect(
      fleet.store.transaction(async () => {
        fleet.store.noteProgress({
          type: 'host.progress',
          rolloutId: id,
          hostId: 'h-1',
          state: 'applying',
          at: at(fleet),
        });
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    expect(told).toEqual([]);
    await progress(fleet, 'h-1', orderId, 'applying');
    expect(told).toHaveLength(1);
  });

  it('ignores progress of an order whose host is done with it', async () => {
    const { fleet, id, orderId } = await inFlight();
    await report(fleet, 'h-1', orderId, 'healthy');
    const before = await fleet.dump();
    await progress(fleet, 'h-1', orderId, 'applying');
    expect((await fleet.run(id, 'h-1')).state).toBe('healthy');
    expect(await fleet.dump()).toBe(before);
  });

  it('ignores phases that are not progress of an apply, and reports of another host’s order', async () => {
    const { fleet, id, orderId } = await inFlight();
    await progress(fleet, 'h-1', orderId, 'reverting');
    await progress(fleet, 'h-1', orderId, 'done');
    await progress(fleet, 'h-2', orderId, 'applying');
    expect((await fleet.run(id, 'h-1')).state).toBe('dispatched');
  });
});

describe('results of apply orders', () => {
  const outcomes: [OrderOutcome, string, boolean][] = [
    ['healthy', 'healthy', false],
    ['already_applied', 'healthy', false],
    ['skipped', 'skipped', false],
    ['cancelled', 'cancelled', false],
    ['revert_failed', 'revert_failed', true],
    ['failed', 'failed', true],
    ['reverted', 'failed', true],
    ['would_apply', 'failed', true],
    ['would_fail', 'failed', true],
    ['blocked', 'failed', true],
  ];

  it.each(outcomes)('%s leaves the host %s (a counted failure: %s)', async (outcome, state, counted) => {
    const { fleet, id, orderId } = await inFlight({ maxFailures: 5 });
    await report(fleet, 'h-1', orderId, outcome, { changed: false });
    expect(await fleet.run(id, 'h-1')).toMatchObject({ state, countedFailure: counted });
  });

  it('record the error, the reason and the health seen, on the host and in its event', async () => {
    const { fleet, id, orderId } = await inFlight({ maxFailures: 5 });
    const health: HealthCheckResult[] = [{ check: 'port', kind: 'tcp', ok: false, observed: 'refused', at: at(fleet) }];
    await report(fleet, 'h-1', orderId, 'failed', { errorCode: 'health_failed', reason: 'port closed', health });
    expect(await fleet.run(id, 'h-1')).toMatchObject({
      state: 'failed',
      errorCode: 'health_failed',
      reason: 'port closed',
      health,
    });
    expect((await fleet.events(id)).find((e) => e.type === 'host.failed')?.data).toEqual({
      errorCode: 'health_failed',
      reason: 'port closed',
      changed: false,
      health,
    });
  });

  it('record no error, reason or health when there are none', async () => {
    const { fleet, id, orderId } = await inFlight();
    await report(fleet, 'h-1', orderId, 'healthy');
    expect(await fleet.run(id, 'h-1')).toMatchObject({ errorCode: null, reason: null, health: null });
    expect((await fleet.events(id)).find((e) => e.type === 'host.healthy')?.data).toEqual({
      errorCode: null,
      reason: null,
      changed: true,
    });
  });

  it('are acknowledged with the result time they acknowledge', async () => {
    const { fleet, orderId } = await inFlight();
    await report(fleet, 'h-1', orderId, 'healthy');
    expect(fleet.sentOf('order.ack', 'h-1').map((s) => s.message)).toEqual([
      { type: 'order.ack', orderId, finishedAt: at(fleet) },
    ]);
  });

  it('from another host are ignored and not acknowledged', async () => {
    const { fleet, id, orderId } = await inFlight();
    const before = await fleet.dump();
    await report(fleet, 'h-2', orderId, 'failed');
    expect(await fleet.dump()).toBe(before);
    expect((await fleet.run(id, 'h-1')).state).toBe('dispatched');
    expect(fleet.sentOf('order.ack')).toEqual([]);
  });

  it('that come after a timeout correct what the host carries, without moving it', async () => {
    const { fleet, id, orderId } = await inFlight({ hostTimeoutSeconds: 10, maxFailures: 1 });
    await fleet.advance(11 * SECOND);
    await report(fleet, 'h-1', orderId, 'healthy');
    expect(await fleet.run(id, 'h-1')).toMatchObject({ state: 'timed_out', changed: true, answered: true });
    expect((await fleet.events(id)).at(-1)).toMatchObject({
      type: 'host.late_result',
      actor: 'h-1',
      fromState: 'timed_out',
      toState: 'timed_out',
      data: { outcome: 'healthy', changed: true },
    });
  });

  it("that come late are recorded once (the agent's account of the host), and say nothing new after that", async () => {
    const { fleet, id, orderId } = await inFlight({ hostTimeoutSeconds: 10, maxFailures: 1 });
    await fleet.advance(11 * SECOND);
    const events = (await fleet.events(id)).length;
    await report(fleet, 'h-1', orderId, 'failed', { changed: false });
    expect(await fleet.events(id)).toHaveLength(events + 1);
    expect((await fleet.events(id)).at(-1)).toMatchObject({
      type: 'host.late_result',
      data: { outcome: 'failed', changed: false },
    });
    await report(fleet, 'h-1', orderId, 'failed', { changed: false });
    expect(await fleet.events(id)).toHaveLength(events + 1);
    expect(fleet.sentOf('order.ack', 'h-1')).toHaveLength(2);
  });

  it('after the first answer, correct the record only towards changed: a host flipping changed adds no row per repeat', async () => {
    const { fleet, id, orderId } = await inFlight({ hostTimeoutSeconds: 10, maxFailures: 1 });
    await fleet.advance(11 * SECOND);
    await report(fleet, 'h-1', orderId, 'failed', { changed: false });
    const events = (await fleet.events(id)).length;
    for (let i = 0; i < 10; i++) await report(fleet, 'h-1', orderId, 'failed', { changed: i % 2 === 0 });
    // The one correction that counts, towards changed (a revert must find it); the flips back are ignored.
    const late = (await fleet.events(id)).slice(events);
    expect(late.map((e) => [e.type, (e.data as { changed: boolean }).changed])).toEqual([['host.late_result', true]]);
    expect(await fleet.run(id, 'h-1')).toMatchObject({ state: 'timed_out', changed: true });
  });

  it('that show a host of a reverted rollout still changed send the rollout back to reverting', async () => {
    const { fleet, id, orderId } = await inFlight({ hostTimeoutSeconds: 10, maxFailures: 1 });
    await fleet.advance(11 * SECOND);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverted');
    await report(fleet, 'h-1', orderId, 'healthy');
    expect(await fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert', 'h-1')).toHaveLength(1);
  });

  it('that say a healthy host failed in its bake count the failure, and say so', async () => {
    for (const outcome of ['failed', 'revert_failed'] as const) {
      const { fleet, id, orderId } = await inFlight({ bakeSeconds: 60, maxFailures: 5, waves: [1, '100%'] });
      await report(fleet, 'h-1', orderId, 'healthy');
      await report(fleet, 'h-1', orderId, outcome, {
        changed: outcome === 'revert_failed',
        errorCode: 'health_failed',
      });
      expect(await fleet.run(id, 'h-1')).toMatchObject({
        state: outcome,
        countedFailure: true,
        errorCode: 'health_failed',
      });
      expect((await fleet.events(id)).find((e) => e.type === `host.${outcome}`)?.data).toMatchObject({
        during: 'bake',
      });
    }
  });

  it('that say a healthy host failed in its bake after its rollout succeeded record it uncounted, once, and say so', async () => {
    for (const outcome of ['failed', 'revert_failed'] as const) {
      const { fleet, id, orderId } = await inFlight({ bakeSeconds: 60, maxFailures: 0 });
      await report(fleet, 'h-1', orderId, 'healthy');
      await fleet.advance(61 * SECOND);
      expect(await fleet.state(id)).toBe('succeeded');
      // A watch that saw health fail before the cancel ending it arrived: reverted itself, or could not.
      const changed = outcome === 'revert_failed';
      await report(fleet, 'h-1', orderId, outcome, { changed, errorCode: 'health_failed' });
      await report(fleet, 'h-1', orderId, outcome, { changed, errorCode: 'health_failed' }); // a repeat
      expect(await fleet.run(id, 'h-1')).toMatchObject({ state: outcome, changed, countedFailure: false });
      const events = await fleet.events(id);
      expect(events.filter((e) => e.type === `host.${outcome}`).map((e) => e.data)).toMatchObject([
        { during: 'bake', after: 'succeeded', counted: false, errorCode: 'health_failed' },
      ]);
      expect(events.filter((e) => e.type === 'rollout.late_failure').map((e) => e.data)).toEqual([
        {
          hostId: 'h-1',
          orderId,
          outcome,
          changed,
          errorCode: 'health_failed',
          reason: null,
          warning: `h-1 failed its bake watch after the rollout succeeded (${changed ? 'it still carries the change' : 'it reverted itself'}); not counted against the failure budget`,
        },
      ]);
      expect(await fleet.state(id)).toBe('succeeded');
    }
  });

  it('of a host already reverting change nothing it carries', async () => {
    const { fleet, id, orderId } = await inFlight({ hostTimeoutSeconds: 10, maxFailures: 1 });
    await report(fleet, 'h-1', orderId, 'healthy');
    await fleet.engine.revertHost(id, 'h-1', 'alice');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'h-1')).state).toBe('reverting');
    await report(fleet, 'h-1', orderId, 'failed', { changed: false });
    expect(await fleet.run(id, 'h-1')).toMatchObject({ state: 'reverting', changed: true });
  });
});

describe('results of revert orders', () => {
  async function reverting() {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1']);
    const id = await fleet.launch({ hostTimeoutSeconds: 10 });
    await fleet.finish('h-1');
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    return { fleet, id, revertOrderId: (await fleet.run(id, 'h-1')).revertOrderId as string };
  }

  it('reverted clears any error; revert_failed keeps it, on the host and in the event', async () => {
    const ok = await reverting();
    // What the apply went through (its error) is history once the host is back: the row says reverted, no error.
    await report(ok.fleet, 'h-1', ok.revertOrderId, 'reverted', {
      changed: false,
      errorCode: 'health_failed',
      reason: 'why it was reverted',
    });
    expect(await ok.fleet.run(ok.id, 'h-1')).toMatchObject({
      state: 'reverted',
      changed: false,
      errorCode: null,
      reason: null,
    });

    const bad = await reverting();
    await report(bad.fleet, 'h-1', bad.revertOrderId, 'revert_failed', {
      changed: true,
      errorCode: 'health_failed',
      reason: 'still broken',
    });
    expect(await bad.fleet.run(bad.id, 'h-1')).toMatchObject({
      state: 'revert_failed',
      errorCode: 'health_failed',
      reason: 'still broken',
    });
    expect((await bad.fleet.events(bad.id)).find((e) => e.type === 'host.revert_failed')?.data).toEqual({
      errorCode: 'health_failed',
      reason: 'still broken',
    });
  });

  it('a second report of a revert already recorded is acknowledged and changes nothing', async () => {
    const { fleet, id, revertOrderId } = await reverting();
    await report(fleet, 'h-1', revertOrderId, 'reverted', { changed: false });
    const before = await fleet.dump();
    await report(fleet, 'h-1', revertOrderId, 'revert_failed', { changed: true });
    expect(await fleet.dump()).toBe(before);
    expect((await fleet.run(id, 'h-1')).state).toBe('reverted');
    expect(fleet.sentOf('order.ack', 'h-1').filter((s) => s.message.orderId === revertOrderId)).toHaveLength(2);
  });

  it('a success that comes after the revert was given up on is recorded, and the rollout ends reverted', async () => {
    const { fleet, id, revertOrderId } = await reverting();
    await fleet.advance(11 * SECOND);
    expect((await fleet.run(id, 'h-1')).state).toBe('revert_failed');
    expect(await fleet.state(id)).toBe('revert_failed');

    await report(fleet, 'h-1', revertOrderId, 'reverted', { changed: false });
    expect((await fleet.run(id, 'h-1')).state).toBe('reverted');
    expect(await fleet.state(id)).toBe('reverted');
  });
  it('a failure that comes after the revert was given up on is a duplicate: acknowledged, nothing changes', async () => {
    const { fleet, id, revertOrderId } = await reverting();
    await fleet.advance(11 * SECOND);
    expect((await fleet.run(id, 'h-1')).state).toBe('revert_failed');
    const before = await fleet.dump();
    await report(fleet, 'h-1', revertOrderId, 'revert_failed', { changed: true, errorCode: 'health_failed' });
    expect(await fleet.dump()).toBe(before);
    expect(fleet.sentOf('order.ack', 'h-1').filter((s) => s.message.orderId === revertOrderId)).toHaveLength(1);
  });

  it('reverted clears the error and reason the apply left on the host', async () => {
    const { fleet, id, orderId } = await inFlight({ maxFailures: 5 });
    await report(fleet, 'h-1', orderId, 'failed', { changed: true, errorCode: 'health_failed', reason: 'port closed' });
    expect(await fleet.run(id, 'h-1')).toMatchObject({
      state: 'failed',
      errorCode: 'health_failed',
      reason: 'port closed',
    });
    await fleet.engine.revertHost(id, 'h-1', 'alice');
    await fleet.engine.whenIdle();
    await report(fleet, 'h-1', (await fleet.run(id, 'h-1')).revertOrderId as string, 'reverted', { changed: false });
    expect(await fleet.run(id, 'h-1')).toMatchObject({
      state: 'reverted',
      changed: false,
      errorCode: null,
      reason: null,
    });
  });

  it('a revert of one host asked for in a rollout whose revert failed leaves the rollout as it is when it fails again', async () => {
    const { fleet, id } = await reverting();
    await fleet.advance(11 * SECOND);
    expect(await fleet.state(id)).toBe('revert_failed');
    await fleet.engine.revertHost(id, 'h-1', 'alice');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'h-1')).state).toBe('reverting');
    const rolloutEvents = async () => (await fleet.events(id)).filter((e) => e.hostId === null);
    const before = await rolloutEvents();

    await report(fleet, 'h-1', (await fleet.run(id, 'h-1')).revertOrderId as string, 'revert_failed', {
      changed: true,
    });
    expect((await fleet.run(id, 'h-1')).state).toBe('revert_failed');
    expect(await fleet.state(id)).toBe('revert_failed');
    expect(await rolloutEvents()).toEqual(before);
  });
});

describe('a rollout halted with autoRevert wave', () => {
  it('sends back a host of the halted wave that reports its change after the halt, and no other', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], autoRevert: 'wave', maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    expect(await fleet.state(id)).toBe('halted');

    await fleet.finish('host-2', 'failed', false);
    await fleet.finish('host-3');
    expect(await fleet.hostStates(id)).toMatchObject({ 'host-2': 'failed', 'host-3': 'reverting' });
    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-3']);
  });

  it('leaves such a host alone when the scope is only the host', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], autoRevert: 'host', maxFailures: 0 });
    await fleet.finish('host-1', 'failed');
    await fleet.finish('host-2');
    expect(await fleet.hostStates(id)).toMatchObject({ 'host-2': 'healthy' });
    expect(fleet.sentOf('order.revert')).toEqual([]);
  });
  it('leaves a host of another wave that reports its change after the halt: only the halted wave goes back', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    // Wave 1 is host-1; wave 2 is host-2 and host-3.
    const id = await fleet.launch({ waves: [1, '100%'], autoRevert: 'wave', maxFailures: 0 });
    await fleet.finish('host-1', 'skipped', false); // no failure: wave 1 passes
    await fleet.finish('host-2', 'failed', false);
    expect(await fleet.state(id)).toBe('halted');
    // A retry goes back to wave 1 for host-1 while host-3 of wave 2 still has its order in flight.
    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    expect((await fleet.rollout(id)).currentWave).toBe(0);
    await fleet.finish('host-1', 'failed', false);
    expect(await fleet.state(id)).toBe('halted');

    await fleet.finish('host-3');
    expect(await fleet.hostStates(id)).toMatchObject({ 'host-3': 'healthy' });
    expect(fleet.sentOf('order.revert')).toEqual([]);
  });
});
