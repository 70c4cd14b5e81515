/**
 * Specification of the rollout engine, by example: four eyes and drafts. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode, RolloutRequestSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { refusal } from './support/refusal.js';
import { PATCH_ID, SimulatedFleet } from './support/simulated-fleet.js';

// ---- four eyes ---------------------------------------------------------------------------------

describe('approval (four eyes)', () => {
  it('refuses an approval by the person who created the rollout', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id, state } = await fleet.create({ requiredApprovals: 1 }, 'alice');
    expect(state).toBe('awaiting_approval');

    const err = await refusal(async () => await fleet.engine.approve(id, 'alice'));
    expect(err.code).toBe(ErrorCode.forbidden);
    expect(await fleet.state(id)).toBe('awaiting_approval');
    expect(await fleet.store.rollouts.approvals(id)).toEqual([]);
  });

  it('refuses an approval by the author of the patch, though someone else created the rollout', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    // The patch is alice's (PATCH's createdBy); olga, who may create rollouts but not approve, asks for one.
    expect((await fleet.store.patches.get(PATCH_ID))?.createdBy).toBe('alice');
    const { id } = await fleet.create({ requiredApprovals: 1 }, 'olga');

    const err = await refusal(async () => await fleet.engine.approve(id, 'alice'));
    expect(err.code).toBe(ErrorCode.forbidden);
    expect(err.message).toMatch(/author of its patch/);
    expect(err.details).toMatchObject({ rolloutId: id, patchId: PATCH_ID, patchCreatedBy: 'alice' });
    expect(await fleet.state(id)).toBe('awaiting_approval');
    expect(await fleet.store.rollouts.approvals(id)).toEqual([]);
    expect((await fleet.engine.approve(id, 'bob')).state).toBe('scheduled');
  });

  it('moves to scheduled once a second person approves', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id } = await fleet.create({ requiredApprovals: 1 }, 'alice');

    expect((await fleet.engine.approve(id, 'bob')).state).toBe('scheduled');
    expect((await fleet.store.rollouts.approvals(id)).map((a) => a.approver)).toEqual(['bob']);
  });

  it('with requiredApprovals 2 needs two distinct approvers; the same one twice is a conflict', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id } = await fleet.create({ requiredApprovals: 2 }, 'alice');

    expect((await fleet.engine.approve(id, 'bob')).state).toBe('awaiting_approval');
    const again = await refusal(async () => await fleet.engine.approve(id, 'bob'));
    expect(again.code).toBe(ErrorCode.conflict);
    expect(await fleet.state(id)).toBe('awaiting_approval');
    expect((await fleet.engine.approve(id, 'carol')).state).toBe('scheduled');
    expect((await fleet.store.rollouts.approvals(id)).map((a) => a.approver)).toEqual(['bob', 'carol']);
  });

  it('refuses to retry a rollout aborted before it started: retried, it would run without an approval', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id } = await fleet.create({ requiredApprovals: 1 }, 'olga');
    expect((await fleet.engine.abort(id, 'olga', null)).state).toBe('aborted');

    const err = await refusal(async () => await fleet.engine.retry(id, 'olga'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.message).toMatch(/never started/);
    expect(await fleet.state(id)).toBe('aborted');
    expect(fleet.sent).toEqual([]);
    expect((await fleet.events(id)).map((e) => e.type)).not.toContain('rollout.running');
  });

  it('refuses to start before approval, naming the current state', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const { id } = await fleet.create({ requiredApprovals: 1 }, 'alice');

    const err = await refusal(async () => await fleet.engine.start(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ rolloutId: id, state: 'awaiting_approval' });
    expect(await fleet.state(id)).toBe('awaiting_approval');
    expect(fleet.sent).toEqual([]);
  });
});

describe('drafts', () => {
  it('a draft can be planned, then submitted for approval; it cannot be approved or started before', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const rollout = await fleet.engine.create(
      RolloutRequestSchema.parse({ patchId: PATCH_ID, target: { all: true }, draft: true }),
      'alice',
    );
    expect(rollout.state).toBe('draft');
    expect((await new RolloutView(fleet.store, () => true).plan(rollout.id)).waveSizes).toEqual([1]);
    await expect(fleet.engine.approve(rollout.id, 'bob')).rejects.toThrow(/cannot approve a rollout that is draft/);
    await expect(fleet.engine.start(rollout.id, 'alice')).rejects.toThrow(/cannot start a rollout that is draft/);
    expect((await fleet.engine.submit(rollout.id, 'alice')).state).toBe('awaiting_approval');
    expect((await fleet.engine.approve(rollout.id, 'bob')).state).toBe('scheduled');
  });
});
