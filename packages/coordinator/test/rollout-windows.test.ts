/**
 * Specification of the rollout engine, by example: maintenance windows. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import type { MaintenanceWindow, RolloutRequestInput } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { canStartWave } from '../src/schedule/maintenance-window.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

// ---- maintenance windows -----------------------------------------------------------------------

describe('maintenance window', () => {
  /** 02:00–03:00 UTC daily; no wave starts after 02:45. */
  const WINDOW: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
  const OPENS = Date.parse('2030-01-08T02:00:00Z');
  const CUTOFF = Date.parse('2030-01-08T02:45:00Z');
  const NEXT_OPENS = Date.parse('2030-01-09T02:00:00Z');

  async function windowed(input: Partial<RolloutRequestInput> = {}): Promise<{ fleet: SimulatedFleet; id: string }> {
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], window: WINDOW, ...input });
    return { fleet, id };
  }

  it('started outside the window: paused as "maintenance window closed", nothing sent', async () => {
    const { fleet, id } = await windowed();
    expect(await fleet.state(id)).toBe('paused');
    expect((await fleet.rollout(id)).stateReason).toBe('maintenance window closed');
    expect(fleet.sentOf('order.apply')).toEqual([]);
    expect((await fleet.events(id)).at(-1)).toMatchObject({
      type: 'rollout.paused',
      actor: 'system',
      fromState: 'running',
    });
  });

  it('is watched from creation, so node-cron can wake the engine when it opens', async () => {
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(hosts(1));
    const { id } = await fleet.create({ window: WINDOW, requiredApprovals: 1 });
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);
  });

  it('once the clock is inside the window, a tick resumes it and it dispatches', async () => {
    const { fleet, id } = await windowed();
    fleet.now = OPENS;
    await fleet.engine.tick();
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.running' && e.actor === 'system')).toMatchObject({
      fromState: 'paused',
      data: { reason: 'maintenance window open' },
    });
  });

  it('at the cutoff: in-flight hosts finish, then it pauses; the next window resumes it by itself', async () => {
    const { fleet, id } = await windowed({ maxParallel: 2 });
    fleet.now = OPENS;
    fleet.engine.wake(id);
    await fleet.engine.whenIdle();
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);

    fleet.now = CUTOFF;
    await fleet.finish('host-1');
    expect(fleet.appliedHosts()).toEqual(['host-1', 'host-2']);
    expect(await fleet.state(id)).toBe('running');
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('paused');
    expect((await fleet.rollout(id)).stateReason).toBe('maintenance window closed');
    expect(await fleet.hostStates(id)).toEqual({ 'host-1': 'healthy', 'host-2': 'healthy', 'host-3': 'queued' });

    await fleet.advance(NEXT_OPENS - 1 - fleet.now);
    expect(await fleet.state(id)).toBe('paused');
    await fleet.advance(1);
    expect(await fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
    await fleet.finish('host-3');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('its status counts down to the window: the next opening while closed, the cutoff while open; nothing once over', async () => {
    const { fleet, id } = await windowed({ maxParallel: 2 });
    const view = new RolloutView(
      fleet.store,
      () => true,
      undefined,
      undefined,
      () => fleet.now,
    );
    const next = {
      open: false,
      opensAt: '2030-01-08T02:00:00.000Z',
      cutoffAt: '2030-01-08T02:45:00.000Z',
      closesAt: '2030-01-08T03:00:00.000Z',
    };
    expect((await view.status(id)).window).toEqual(next);

    fleet.now = OPENS;
    fleet.engine.wake(id);
    await fleet.engine.whenIdle();
    expect((await view.status(id)).window).toEqual({ ...next, open: true });

    // Past the cutoff, the window still open lets no wave start: the next one is what counts.
    fleet.now = CUTOFF;
    expect((await view.status(id)).window).toEqual({
      open: false,
      opensAt: '2030-01-09T02:00:00.000Z',
      cutoffAt: '2030-01-09T02:45:00.000Z',
      closesAt: '2030-01-09T03:00:00.000Z',
    });

    await fleet.finish('host-1');
    await fleet.finish('host-2');
    await fleet.advance(NEXT_OPENS - fleet.now);
    await fleet.finish('host-3');
    expect(await fleet.state(id)).toBe('succeeded');
    expect((await view.status(id)).window).toBeUndefined();
  });

  it('a rollout without a window has no window in its status', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    expect((await new RolloutView(fleet.store, () => true).status(id)).window).toBeUndefined();
  });

  it('a pause by a person is not undone when a window opens', async () => {
    const { fleet, id } = await windowed();
    fleet.now = OPENS;
    await fleet.engine.tick();
    await fleet.engine.whenIdle();
    await fleet.finishAll(['host-1']);
    await fleet.engine.pause(id, 'alice');
    await fleet.advance(24 * 3600 * SECOND);
    expect(await fleet.state(id)).toBe('paused');
    expect((await fleet.rollout(id)).stateReason).toBe('paused by operator');
  });

  it('survives a restart: the watch is re-armed and the rollout resumes in its window', async () => {
    const { fleet, id } = await windowed();
    expect(await fleet.state(id)).toBe('paused');
    await fleet.restart();
    for (const h of hosts(3)) await fleet.connect(h);

    await fleet.engine.resumeWindows();
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);
    fleet.now = OPENS;
    fleet.engine.wake(id); // what node-cron does when the window opens
    await fleet.engine.whenIdle();

    expect(await fleet.state(id)).toBe('running');
    expect(fleet.appliedHosts()).toEqual(hosts(3));
  });

  it('keeps its watch while paused, drops it when the rollout ends or reverts, and takes it up again on retry', async () => {
    const { fleet, id } = await windowed();
    expect(await fleet.state(id)).toBe('paused');
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);

    await fleet.engine.abort(id, 'alice', 'wrong night');
    expect(fleet.windows.watching.has(id)).toBe(false);
    expect((await fleet.events(id)).at(-1)).toMatchObject({ type: 'rollout.aborted', data: { reason: 'wrong night' } });

    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    expect(fleet.windows.watching.get(id)).toEqual(WINDOW);

    fleet.now = OPENS;
    fleet.engine.wake(id);
    await fleet.engine.whenIdle();
    await fleet.finishAll(hosts(3));
    await fleet.engine.revert(id, 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.state(id)).toBe('reverting');
    expect(fleet.windows.watching.has(id)).toBe(false);
  });
});
