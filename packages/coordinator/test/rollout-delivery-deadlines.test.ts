/**
 * Specification of the rollout engine, by example: how long an order waits for a host that was
 * offline when it was dispatched (offline policy `wait`), and when it may still be delivered.
 */
import type { MaintenanceWindow } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { canStartWave } from '../src/schedule/maintenance-window.js';
import { SECOND, SimulatedFleet } from './support/simulated-fleet.js';

const MINUTE = 60 * SECOND;

describe('an order waiting for an offline host', () => {
  // FAILS today: deadline-sweeper.ts (findExpired) measures hostTimeoutSeconds from dispatchedAt for
  // every host in flight, undelivered ones included, so an order waiting for delivery is timed out at
  // min(deliveryDeadlineSeconds, hostTimeoutSeconds): with the defaults (600 s) a delivery deadline of
  // an hour is in fact ten minutes ("no result within 600s"), and the schema's 7-day maximum for it can
  // never be reached (hostTimeoutSeconds is at most 24 h).
  // Proposed fix: judge a `dispatched` run by the delivery deadline alone, and measure
  // hostTimeoutSeconds from its delivery (a `delivered_at` column written at dispatched → delivered).
  it.fails('is kept for its whole deliveryDeadlineSeconds, even when that is longer than hostTimeoutSeconds', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 0,
      hostTimeoutSeconds: 600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 3600 },
    });
    await fleet.finish('host-1');

    await fleet.advance(15 * MINUTE);
    expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');
    await fleet.connect('host-2');
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  // FAILS today: the order committed for host-2 inside the window waits for it (policy wait), and
  // report-recorder.ts (resendAfterHello) sends it whenever host-2 says hello — at 04:30, an hour and
  // a half after the window closed. The rollout itself stays `running` past the window, since a run
  // waiting for delivery counts as in flight. "No wave starts outside a window" holds; the change on
  // host-2 is made outside it all the same.
  // Proposed fix: do not send a waiting apply order while the rollout's window is closed; at the
  // window's close, put the runs still undelivered back in the queue (no failure), so that the next
  // window dispatches them again.
  it.fails('is not delivered once its maintenance window has closed', async () => {
    const window: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { online: false });
    await fleet.launch({
      waves: ['100%'],
      window,
      hostTimeoutSeconds: 5 * 3600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 4 * 3600 },
    });
    fleet.now = Date.parse('2030-01-08T02:00:00Z');
    await fleet.advance(0);
    await fleet.finish('host-1');
    await fleet.advance(60 * MINUTE);

    fleet.now = Date.parse('2030-01-08T04:30:00Z');
    await fleet.connect('host-2');

    expect(fleet.sentOf('order.apply', 'host-2').filter((sent) => sent.delivered)).toEqual([]);
  });
});
