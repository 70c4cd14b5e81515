/**
 * Specification of the rollout engine, by example: whole-rollout and per-host revert, and autoRevert on halt. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode, PROTOCOL_VERSION, storedPatch } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RevertRunner } from '../src/engine/revert-runner.js';
import { RolloutView } from '../src/engine/rollout-view.js';
import { refusal } from './support/refusal.js';
import { haltedWithWaveRevert } from './support/rollout-scenarios.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- revert ------------------------------------------------------------------------------------

describe('revert', () => {
  it('of a whole rollout sends order.revert to every changed host, at most revertParallel at once, and ends reverted', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(5);
    await fleet.addHosts(ids);
    await fleet.addHosts(['host-6'], { online: false });
    const id = await fleet.launch({
      waves: [1, '100%'],
      maxFailures: 2,
      revertParallel: 2,
      offline: { mode: 'skip', deliveryDeadlineSeconds: 300 },
    });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'failed'); // restored its own snapshot: nothing to revert
    await fleet.finishAll(ids);
    expect(await fleet.state(id)).toBe('succeeded');

    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert')).toHaveLength(2);

    while ((await fleet.state(id)) === 'reverting') {
      const next = ids.find((h) => fleet.agent(h).openReverts().length > 0);
      if (!next) throw new Error('reverting with no revert in flight');
      await fleet.finishRevert(next);
    }

    expect(await fleet.state(id)).toBe('reverted');
    expect(fleet.maxRevertsInFlight).toBe(2);
    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((s) => s.agentId).sort()).toEqual(['host-1', 'host-3', 'host-4', 'host-5']);
    for (const { agentId, message } of reverts)
      expect(message.revertsOrderId).toBe((await fleet.run(id, agentId)).orderId);
    expect(await fleet.hostStates(id)).toMatchObject({ 'host-2': 'failed', 'host-6': 'skipped' });
  });

  it('ends revert_failed when a host fails to revert, and never retries it by itself', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finishAll(['host-1', 'host-2']);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();

    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2', 'revert_failed');
    expect(await fleet.state(id)).toBe('revert_failed');
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'revert_failed', changed: true });

    await fleet.advance(3600 * SECOND);
    await fleet.connect('host-2');
    expect(fleet.sentOf('order.revert', 'host-2')).toHaveLength(1);
    expect(await fleet.state(id)).toBe('revert_failed');
  });

  it('counts every host that failed to revert, in every wave, and only this rollout’s', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = ['host-1', 'host-2', 'host-3', 'host-4'];
    await fleet.addHosts(ids);
    // An earlier rollout whose one host failed to revert: its failure is not this rollout's.
    const earlier = await fleet.launch({ waves: ['100%'], target: { hostIds: ['host-4'] } });
    await fleet.finish('host-4');
    await fleet.engine.revert(earlier, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-4', 'revert_failed');
    expect(await fleet.state(earlier)).toBe('revert_failed');

    const id = await fleet.launch({ waves: [1, '100%'], target: { hostIds: ['host-1', 'host-2', 'host-3'] } });
    await fleet.finish('host-1');
    await fleet.finishAll(['host-2', 'host-3']);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1', 'revert_failed');
    await fleet.finishRevert('host-2', 'revert_failed');
    await fleet.finishRevert('host-3', 'revert_failed');
    expect(await fleet.rollout(id)).toMatchObject({
      state: 'revert_failed',
      stateReason: '3 host(s) failed to revert',
    });
  });

  it('a host that never answers its revert order is revert_failed after hostTimeoutSeconds; a late success still counts', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'], hostTimeoutSeconds: 60 });
    await fleet.finishAll(['host-1']);
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect((await fleet.run(id, 'host-1')).state).toBe('reverting');

    await fleet.advance(61 * SECOND);
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'revert_failed', errorCode: 'revert_failed' });
    expect(await fleet.state(id)).toBe('revert_failed');

    await fleet.finishRevert('host-1');
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'reverted', changed: false });
    expect(await fleet.state(id)).toBe('reverted');
  });

  it('an explicit revert of a revert_failed rollout tries the failed host again', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1', 'revert_failed');
    expect(await fleet.state(id)).toBe('revert_failed');

    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverting');
    expect(fleet.sentOf('order.revert', 'host-1')).toHaveLength(2);
    await fleet.finishRevert('host-1');
    expect(await fleet.state(id)).toBe('reverted');
  });

  it('of a whole rollout also tries a host whose own self-revert failed', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    await fleet.finish('host-1');
    await fleet.finish('host-2', 'revert_failed'); // health failed and its snapshot did not restore
    expect(await fleet.state(id)).toBe('succeeded');
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'revert_failed', changed: true });

    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-1', 'host-2']);
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2');
    expect(await fleet.state(id)).toBe('reverted');
  });

  it('of one host reverts only that host and leaves the rollout as it was', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2', 'host-3']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finishAll(['host-1', 'host-2', 'host-3']);

    await fleet.engine.revertHost(id, 'host-2', 'bob');
    await fleet.engine.whenIdle();

    const reverts = fleet.sentOf('order.revert');
    expect(reverts.map((s) => [s.agentId, s.message.revertsOrderId])).toEqual([
      ['host-2', (await fleet.run(id, 'host-2')).orderId],
    ]);
    await fleet.finishRevert('host-2');
    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'reverted', 'host-3': 'healthy' });
    expect((await fleet.run(id, 'host-2')).changed).toBe(false);
    expect(await fleet.state(id)).toBe('succeeded');
    expect((await fleet.events(id)).find((e) => e.type === 'host.revert_requested')).toMatchObject({
      actor: 'bob',
      hostId: 'host-2',
    });
  });

  it('of one host holds its wave open: the rollout succeeds only once that revert is in', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    await fleet.engine.revertHost(id, 'host-1', 'bob');
    await fleet.engine.whenIdle();

    await fleet.finish('host-2');
    await fleet.advance(10 * SECOND);
    expect((await fleet.run(id, 'host-1')).state).toBe('reverting');
    expect(await fleet.state(id)).toBe('running');
    expect((await fleet.events(id)).some((e) => e.type === 'wave.passed')).toBe(false);

    await fleet.finishRevert('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'reverted', 'host-2': 'healthy' });
  });

  it('never sends a revert order whose transaction rolled back', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    const runner = new RevertRunner({
      store: fleet.store,
      channel: {
        send: (agentId, message) => {
          fleet.sent.push({ agentId, message, delivered: false });
          return true;
        },
        isOnline: () => true,
        protocolVersionOf: () => PROTOCOL_VERSION,
      },
      clock: { now: () => fleet.now },
      windows: undefined,
      isStopped: () => false,
    });

    await expect(
      fleet.store.transaction(async () => {
        await runner.dispatch(await fleet.run(id, 'host-1'));
        throw new Error('SQLITE_FULL: database or disk is full');
      }),
    ).rejects.toThrow(/disk is full/);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert')).toEqual([]);
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'healthy', revertOrderId: null });

    await fleet.store.transaction(async () => await runner.dispatch(await fleet.run(id, 'host-1')));
    expect(fleet.sentOf('order.revert').map((s) => s.message.revertsOrderId)).toEqual([
      (await fleet.run(id, 'host-1')).orderId,
    ]);
  });

  it('of one host is refused when the host carries no change', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    await fleet.finish('host-1', 'failed');
    expect((await refusal(async () => await fleet.engine.revertHost(id, 'host-1', 'bob'))).code).toBe(
      ErrorCode.illegalTransition,
    );
    expect((await refusal(async () => await fleet.engine.revertHost(id, 'host-9', 'bob'))).code).toBe(
      ErrorCode.notFound,
    );
  });
});

// ---- autoRevert scopes -------------------------------------------------------------------------

describe('autoRevert on halt', () => {
  async function haltInSecondWave(
    scope: 'none' | 'host' | 'wave' | 'rollout',
  ): Promise<{ fleet: SimulatedFleet; id: string }> {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(5));
    const id = await fleet.launch({ waves: [2, '100%'], maxFailures: 0, autoRevert: scope });
    await fleet.finishAll(['host-1', 'host-2']);
    await fleet.finish('host-3');
    await fleet.finish('host-4');
    await fleet.finish('host-5', 'failed');
    return { fleet, id };
  }

  it('wave: reverts the healthy hosts of the halted wave, and only those', async () => {
    const { fleet, id } = await haltInSecondWave('wave');
    expect(await fleet.state(id)).toBe('halted');
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-3', 'host-4']);
    await fleet.finishRevert('host-3');
    await fleet.finishRevert('host-4');
    expect(await fleet.hostStates(id)).toEqual({
      'host-1': 'healthy',
      'host-2': 'healthy',
      'host-3': 'reverted',
      'host-4': 'reverted',
      'host-5': 'failed',
    });
    expect(await fleet.state(id)).toBe('halted');
  });

  it('wave: a host of the halted wave that finishes healthy after the halt is reverted too', async () => {
    const { fleet, id } = await haltedWithWaveRevert();
    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1']);

    await fleet.finish('host-3'); // was in flight at the halt

    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1', 'host-3']);
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-3');
    expect((await fleet.store.hostRuns.forRollout(id)).filter((r) => r.changed)).toEqual([]);
  });

  it('rollout: moves to reverting and reverts every changed host of every wave', async () => {
    const { fleet, id } = await haltInSecondWave('rollout');
    expect(await fleet.state(id)).toBe('reverting');
    expect(
      fleet
        .sentOf('order.revert')
        .map((s) => s.agentId)
        .sort(),
    ).toEqual(['host-1', 'host-2', 'host-3', 'host-4']);
    for (const h of ['host-1', 'host-2', 'host-3', 'host-4']) await fleet.finishRevert(h);

    expect(await fleet.state(id)).toBe('reverted');
    expect(
      (await fleet.events(id))
        .filter((e) => e.type.startsWith('rollout.') && e.toState !== null)
        .map((e) => `${e.fromState ?? ''}→${e.toState}`),
    ).toEqual(['→scheduled', 'scheduled→running', 'running→halted', 'halted→reverting', 'reverting→reverted']);
  });

  it('rollout: the halt and the move to reverting are one commit, so a crash right after the halt still reverts', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'rollout' });
    await fleet.finish('host-1');
    // The coordinator dies as soon as the halt is on disk: what was committed with it is all there is.
    const crashes: string[] = [];
    let restarted: Promise<void> | undefined;
    fleet.store.onEvent((event) => {
      if (event.type !== 'rollout.halted') return;
      crashes.push(event.type);
      // The engine and the store stop at once (restart's synchronous part); the new ones open after.
      restarted = fleet.restart();
    });
    await fleet.finish('host-2', 'failed');
    await restarted;

    // The crash happened, once, right at the halt: a new engine on a new connection runs now.
    expect(crashes).toEqual(['rollout.halted']);
    expect(fleet.generation).toBe(1);
    expect(await fleet.state(id)).toBe('reverting');
    for (const h of hosts(3)) await fleet.connect(h);
    await fleet.advance(SECOND);
    expect(fleet.sentOf('order.revert').map((s) => s.agentId)).toEqual(['host-1']);
    expect(fleet.agent('host-3').cancels).toEqual([(await fleet.run(id, 'host-3')).orderId]); // in flight at the halt
    await fleet.finishRevert('host-1');
    await fleet.finish('host-3', 'cancelled');
    expect(await fleet.state(id)).toBe('reverted');
  });

  it.each(['host', 'none'] as const)('%s: reverts nothing more', async (scope) => {
    const { fleet, id } = await haltInSecondWave(scope);
    await fleet.advance(3600 * SECOND);
    expect(await fleet.state(id)).toBe('halted');
    expect(fleet.sentOf('order.revert')).toEqual([]);
    expect(fleet.sentOf('order.apply').every((s) => s.message.revertOnHealthFailure === (scope === 'host'))).toBe(true);
  });
});

// ---- a patch marked revertable: false ------------------------------------------------------------

describe('a patch marked revertable: false', () => {
  async function withNotRevertablePatch(fleet: SimulatedFleet): Promise<string> {
    const patch = storedPatch(
      {
        ...SAMPLE_PATCH_SPEC,
        change: { kind: 'package', manager: 'apt', name: 'hello', version: '2.0-1', revertable: false },
      },
      { id: 'pat_one_way', createdBy: 'alice', createdAt: new Date(fleet.now).toISOString() },
    );
    await fleet.store.transaction(async () => await fleet.store.patches.insert(patch));
    return patch.id;
  }

  it('is never reverted: the rollout and each host refuse it (409) and nothing is sent; the plan says so', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1', 'host-2']);
    const patchId = await withNotRevertablePatch(fleet);
    const id = await fleet.launch({ patchId, waves: ['100%'] });
    await fleet.finishAll(['host-1', 'host-2']);
    expect(await fleet.state(id)).toBe('succeeded');

    const whole = await refusal(async () => await fleet.engine.revert(id, 'alice'));
    expect(whole.code).toBe(ErrorCode.conflict);
    expect(whole.message).toBe(
      'patch pat_one_way is marked "revertable": false — fleetpatch will not revert it (a host may hold no prior .deb to go back to); to undo it, roll out a new patch',
    );
    expect((await refusal(async () => await fleet.engine.revertHost(id, 'host-1', 'alice'))).code).toBe(
      ErrorCode.conflict,
    );
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.revert')).toEqual([]);
    expect(await fleet.state(id)).toBe('succeeded');
    expect((await new RolloutView(fleet.store, () => true).plan(id)).revertable).toBe(false);
  });

  it('refuses autoRevert wave or rollout at create, naming the field; host and none are accepted', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const patchId = await withNotRevertablePatch(fleet);
    for (const autoRevert of ['wave', 'rollout'] as const) {
      const refused = await refusal(async () => await fleet.create({ patchId, autoRevert }));
      expect(refused.code).toBe(ErrorCode.validationFailed);
      expect(refused.details).toMatchObject({ path: 'body.autoRevert' });
    }
    expect((await fleet.create({ patchId, autoRevert: 'none' })).state).toBe('scheduled');
    expect((await fleet.create({ patchId })).request.autoRevert).toBe('host');
  });
});
