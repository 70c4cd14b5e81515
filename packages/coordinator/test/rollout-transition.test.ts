/**
 * The one writer of rollout states, called directly: what a move writes, what its event says, and
 * which moves arm or drop the rollout's maintenance-window watch. Every other test drives the engine.
 */
import { ErrorCode, type MaintenanceWindow, type RolloutState } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { mustGetRollout, transitionRollout } from '../src/engine/rollout-transition.js';
import { SimulatedFleet, T0 } from './support/simulated-fleet.js';

const WINDOW: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 0 };

/** A rollout created with `window` (or none), moved along `path` by the writer itself. */
async function movedAlong(path: RolloutState[], window: MaintenanceWindow | null = WINDOW) {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['h-1']);
  const { id } = await fleet.create(window ? { window } : {});
  const rollout = await mustGetRollout(fleet.store, id);
  const move = async (to: RolloutState, reason: string | null = null, data?: Record<string, unknown>) =>
    await fleet.store.transaction(async () => await transitionRollout(fleet, rollout, to, 'alice', reason, data));
  for (const to of path) await move(to);
  return { fleet, id, rollout, move };
}

describe('transitionRollout', () => {
  it('writes the state, updates the record in place and appends the move as an event', async () => {
    const { fleet, id, rollout, move } = await movedAlong([]);
    await move('running', 'started by hand', { wave: 1 });

    expect(rollout.state).toBe('running');
    expect(await fleet.state(id)).toBe('running');
    expect((await fleet.events(id)).at(-1)).toMatchObject({
      type: 'rollout.running',
      actor: 'alice',
      fromState: 'scheduled',
      toState: 'running',
      data: { reason: 'started by hand', wave: 1 },
      at: new Date(T0).toISOString(),
    });
  });

  it('records no reason when there is none', async () => {
    const { fleet, id, move } = await movedAlong([]);
    await move('running');
    expect((await fleet.events(id)).at(-1)?.data).toEqual({});
  });

  it('refuses a move the table does not have, writing nothing', async () => {
    const { fleet, id, move } = await movedAlong([]);
    const before = await fleet.dump();
    await expect(move('succeeded')).rejects.toThrow(
      expect.objectContaining({
        code: ErrorCode.illegalTransition,
        message: 'cannot move to succeeded a rollout that is scheduled',
      }),
    );
    expect(await fleet.dump()).toBe(before);
    expect(await fleet.state(id)).toBe('scheduled');
  });

  it('refuses a move decided on a record that is stale (another writer moved the rollout), writing nothing', async () => {
    const { fleet, id, rollout, move } = await movedAlong(['running']);
    // Another writer (a group member whose step lock was lost) aborted it meanwhile; this record still says running.
    await fleet.store.transaction(async () => await transitionRollout(fleet, { ...rollout }, 'aborted', 'bob', null));
    const before = await fleet.dump();
    await expect(move('succeeded')).rejects.toThrow(
      expect.objectContaining({
        code: ErrorCode.illegalTransition,
        message: 'cannot move to succeeded a rollout that is no longer running: it is aborted (changed meanwhile)',
        details: { rolloutId: id, state: 'aborted', wanted: 'succeeded' },
      }),
    );
    expect(await fleet.dump()).toBe(before);
    expect(rollout.state).toBe('running');
  });

  it('keeps the window watched through pauses, drops it at an end or a revert, takes it up again after one', async () => {
    const { fleet, id, move } = await movedAlong(['running', 'paused']);
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);

    await move('halted');
    expect(fleet.windows.watching.has(id)).toBe(false);
    await move('running'); // retry
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);
    await move('reverting');
    expect(fleet.windows.watching.has(id)).toBe(false);
  });

  it('a rollout reverting again from a revert that ended stays unwatched', async () => {
    const { fleet, id, move } = await movedAlong(['running', 'reverting', 'reverted']);
    await move('reverting');
    expect(fleet.windows.watching.has(id)).toBe(false);
  });

  it('never watches a rollout without a window', async () => {
    const { fleet, id, move } = await movedAlong(['running', 'aborted'], null);
    await move('running');
    expect(fleet.windows.watching.has(id)).toBe(false);
  });

  it('moves a rollout when no window watcher is configured', async () => {
    const { fleet, id, rollout } = await movedAlong(['running']);
    const { store, clock } = fleet;
    for (const to of ['aborted', 'running'] as const) {
      await store.transaction(
        async () => await transitionRollout({ store, clock, windows: undefined }, rollout, to, 'alice', null),
      );
    }
    expect(await fleet.state(id)).toBe('running');
  });
});

describe('mustGetRollout', () => {
  it('answers not_found for a rollout that does not exist', async () => {
    const fleet = await SimulatedFleet.open();
    await expect(mustGetRollout(fleet.store, 'ro_missing')).rejects.toThrow(
      expect.objectContaining({ code: ErrorCode.notFound, message: 'rollout ro_missing does not exist' }),
    );
  });
});
