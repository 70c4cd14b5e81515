/**
 * Specification of the rollout engine, by example: holding a rollout that waits for its maintenance window.
 */
import type { MaintenanceWindow } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { canStartWave } from '../src/schedule/maintenance-window.js';
import { hosts, SimulatedFleet } from './support/simulated-fleet.js';

describe('a rollout paused until its maintenance window opens', () => {
  /** 02:00–03:00 UTC daily. */
  const WINDOW: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
  const OPENS = Date.parse('2030-01-08T02:00:00Z');

  // FAILS today: `pause` is allowed from `running` only (rollout-states.ts, VERB_TRANSITIONS), so a
  // rollout the window paused answers a person's pause with 409 "cannot pause a rollout that is
  // paused" — and the window resumes it at 02:00 all the same (wave-advancer.ts resumes any rollout
  // whose stateReason is the window's). "A person's pause is never resumed by a window" cannot be
  // used on the rollouts it matters most for; the only hold left is abort, then retry.
  // Proposed fix: a pause of a rollout paused by its window is taken: it keeps `paused`, its reason
  // becomes the person's (with a `rollout.paused` event naming them), so no window resumes it.
  it.fails('can be held by a person, and the window then leaves it paused', async () => {
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'], window: WINDOW });
    expect((await fleet.rollout(id)).stateReason).toBe('maintenance window closed');

    await fleet.engine.pause(id, 'alice');
    fleet.now = OPENS;
    await fleet.engine.tick();
    await fleet.engine.whenIdle();

    expect(await fleet.state(id)).toBe('paused');
    expect(fleet.sentOf('order.apply')).toEqual([]);
  });
});
