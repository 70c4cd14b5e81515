/**
 * Keeping the fleet tidy, as the engine and the view see it: canaries are hosts that have connected
 * (online first), `promote` only ends a bake, a halted wave reads `failed` (also once reverted), a
 * success with hosts reverted by hand says so, and events name waves as people count them.
 */
import { FleetError, RolloutRequestSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { hosts, PATCH_ID, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

const view = (fleet: SimulatedFleet) => new RolloutView(fleet.store, (hostId) => fleet.agent(hostId).online);
const waveHosts = async (fleet: SimulatedFleet, id: string) =>
  (await view(fleet).status(id)).waves.map((w) => w.hosts.map((h) => h.hostId));

describe('canaries', () => {
  it('are online hosts: an offline host sorted first is planned later, a never-connected one last', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['a-never'], { neverConnected: true });
    await fleet.addHosts(['b-offline'], { online: false });
    await fleet.addHosts(['c-online', 'd-online']);
    const id = await fleet.launch({ waves: [1, '100%'] });
    expect(await waveHosts(fleet, id)).toEqual([['c-online'], ['d-online', 'b-offline', 'a-never']]);
    expect(fleet.appliedHosts()).toEqual(['c-online']);
  });

  it('a start whose canary would be a host that never connected is refused, and changes nothing', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2), { neverConnected: true });
    const { id } = await fleet.create({ waves: [1, '100%'], requiredApprovals: 0 });
    let refused: unknown;
    try {
      await fleet.engine.start(id, 'alice');
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(FleetError);
    expect(refused).toMatchObject({
      code: 'conflict',
      message: expect.stringMatching(/^no host can be the canary: host-1 never connected/),
      details: { neverConnected: ['host-1'] },
    });
    expect((await fleet.rollout(id)).state).toBe('scheduled');
    expect(await fleet.store.hostRuns.forRollout(id)).toEqual([]);
    expect(fleet.sent).toEqual([]);
  });

  it('a host that never connected may sit in a later wave: it waits for its delivery deadline there', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { neverConnected: true });
    const id = await fleet.launch({ waves: [1, '100%'] });
    expect(await waveHosts(fleet, id)).toEqual([['host-1'], ['host-2']]);
  });
});

describe('the target', () => {
  it('an empty label selector is refused unless the request says all: true', () => {
    const refused = RolloutRequestSchema.safeParse({ patchId: PATCH_ID, target: { labels: {} } });
    expect(refused.error?.issues.map((i) => [i.path.join('.'), i.message])).toEqual([
      ['target.labels', 'an empty label selector selects every host: name at least one label, or say all: true'],
    ]);
    expect(RolloutRequestSchema.safeParse({ patchId: PATCH_ID, target: { labels: {}, all: true } }).success).toBe(true);
  });
});

describe('promote', () => {
  it('ends a bake of a running rollout, and nothing else: not while paused, not while running a wave', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 600 });
    await expect(fleet.engine.promote(id, 'alice')).rejects.toThrow(/promote ends a bake; it is running, not baking/);
    await fleet.finish('host-1');
    expect((await fleet.rollout(id)).bakeUntil).not.toBeNull();
    await fleet.engine.pause(id, 'alice');
    await expect(fleet.engine.promote(id, 'alice')).rejects.toThrow(
      /promote ends a bake; it is paused: resume it first/,
    );
    expect((await fleet.events(id)).filter((e) => e.type === 'rollout.promoted')).toEqual([]);
    await fleet.engine.resume(id, 'alice');
    await fleet.engine.promote(id, 'alice');
    await fleet.engine.whenIdle();
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.promoted')?.data).toEqual({
      wave: 0,
      waveNumber: 1,
    });
    expect((await fleet.rollout(id)).currentWave).toBe(1);
  });
});

describe('a halted wave', () => {
  it('shows failed while halted and still after the rollout is reverted', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [2, '100%'], bakeSeconds: 60, maxFailures: 0, autoRevert: 'none' });
    await fleet.finish('host-1');
    await fleet.finish('host-2');
    expect((await view(fleet).status(id)).waves[0]?.phase).toBe('baking');
    // The bake watch on host-2 sees health fail: the wave that had passed fails.
    const order = fleet.agent('host-2').latestApply()?.orderId as string;
    await fleet.reportAgain('host-2', order, 'failed', true);
    expect((await fleet.rollout(id)).state).toBe('halted');
    expect((await view(fleet).status(id)).waves.map((w) => w.phase)).toEqual(['failed', 'pending']);

    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2');
    expect((await fleet.rollout(id)).state).toBe('reverted');
    expect((await view(fleet).status(id)).waves.map((w) => w.phase)).toEqual(['failed', 'pending']);
  });

  it('a succeeded rollout reverted later keeps its waves passed', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    expect((await fleet.rollout(id)).state).toBe('succeeded');
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1');
    expect((await view(fleet).status(id)).waves.map((w) => w.phase)).toEqual(['passed']);
  });

  it('an aborted wave shows stopped', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.engine.abort(id, 'alice', null);
    await fleet.engine.whenIdle();
    expect((await view(fleet).status(id)).waves.map((w) => w.phase)).toEqual(['stopped']);
  });
});

describe('a success with hosts reverted by hand', () => {
  it('says so in the final state, its event and the status', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: [1, '100%'] });
    await fleet.finish('host-1');
    await fleet.engine.revertHost(id, 'host-1', 'alice');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1');
    await fleet.advance(SECOND);
    await fleet.finishAll(['host-2', 'host-3']);
    expect((await fleet.rollout(id)).state).toBe('succeeded');
    const warning = 'succeeded, but 1 host(s) were reverted by hand and do not carry the patch: host-1';
    expect((await fleet.rollout(id)).stateReason).toBe(warning);
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.succeeded')?.data).toEqual({
      reason: warning,
      warning,
      revertedByHand: ['host-1'],
    });
    expect((await view(fleet).status(id)).warnings).toEqual([
      'succeeded, but 1 host(s) were reverted by hand and do not carry the patch',
    ]);
  });

  it('a plain success has no warning', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    expect((await fleet.rollout(id)).stateReason).toBeNull();
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.succeeded')?.data).toEqual({});
    expect((await view(fleet).status(id)).warnings).toBeUndefined();
  });
});

describe('wave numbers in events', () => {
  it('are 1-based in waveNumber beside the 0-based wave index', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: [1, '100%'] });
    await fleet.finish('host-1');
    await fleet.advance(SECOND);
    const waves = (await fleet.events(id)).filter((e) => e.type.startsWith('wave.'));
    expect(waves.map((e) => [e.type, e.data?.wave, e.data?.waveNumber])).toEqual([
      ['wave.started', 0, 1],
      ['wave.passed', 0, 1],
      ['wave.started', 1, 2],
    ]);
  });
});
