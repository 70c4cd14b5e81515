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
  // Judged by its delivery deadline alone while it waits (deadline-sweeper.ts); hostTimeoutSeconds runs
  // from its delivery (`delivered_at`: handed to the host's connection, or reported by its agent).
  // It was cut short at min(deliveryDeadlineSeconds, hostTimeoutSeconds) measured from dispatch.
  it('is kept for its whole deliveryDeadlineSeconds, even when that is longer than hostTimeoutSeconds', async () => {
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

  // A waiting order is not sent while its rollout's window is closed (or past its cutoff, when no wave
  // may start either): at the close it goes back in the queue, no failure, and the next window
  // dispatches it again. It was sent at the host's hello whenever that came, outside the window.
  it('is not delivered once its maintenance window has closed', async () => {
    const window: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(['host-1']);
    await fleet.addHosts(['host-2'], { online: false });
    const id = await fleet.launch({
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
    // Back in the queue, no failure: the rollout waits for the next window, which dispatches it.
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'queued', orderId: null, countedFailure: false });
    expect(await fleet.rollout(id)).toMatchObject({ state: 'paused', stateReason: 'maintenance window closed' });
    expect((await fleet.events(id)).filter((e) => e.type === 'host.requeued').map((e) => e.hostId)).toEqual(['host-2']);

    fleet.now = Date.parse('2030-01-09T02:00:00Z');
    await fleet.advance(0);
    expect(fleet.sentOf('order.apply', 'host-2').filter((sent) => sent.delivered)).toHaveLength(1);
    await fleet.finish('host-2');
    expect(await fleet.state(id)).toBe('succeeded');
  });

  it('is not sent at its host hello after the cutoff, nor resent at a takeover, even before the engine has looked at the window', async () => {
    const window: MaintenanceWindow = { cron: '0 2 * * *', timezone: 'UTC', durationMinutes: 60, cutoffMinutes: 15 };
    const fleet = await SimulatedFleet.open({ waveGate: canStartWave });
    await fleet.addHosts(['host-1', 'host-2']);
    fleet.disconnect('host-2');
    const id = await fleet.launch({
      waves: ['100%'],
      window,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 3600 },
    });
    fleet.now = Date.parse('2030-01-08T02:00:00Z');
    await fleet.advance(0);
    expect(fleet.sentOf('order.apply', 'host-2').filter((sent) => sent.delivered)).toEqual([]);

    fleet.now = Date.parse('2030-01-08T02:50:00Z');
    await fleet.connect('host-2');

    expect(fleet.sentOf('order.apply', 'host-2').filter((sent) => sent.delivered)).toEqual([]);
    expect(await fleet.run(id, 'host-2')).toMatchObject({ state: 'dispatched', deliveredAt: null });
    // Nor resent by a coordinator of a group that takes the rollout over now (it resends what is out);
    // the advance it asks for puts the order back in the queue.
    await fleet.engine.takeOver([id]);
    await fleet.engine.whenIdle();
    expect(fleet.sentOf('order.apply', 'host-2')).toHaveLength(1);
    expect((await fleet.run(id, 'host-2')).state).toBe('queued');
  });

  it('is given its whole hostTimeoutSeconds from the moment it reaches its host', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1'], { online: false });
    const id = await fleet.launch({
      waves: ['100%'],
      maxFailures: 0,
      hostTimeoutSeconds: 600,
      offline: { mode: 'wait', deliveryDeadlineSeconds: 3600 },
    });
    await fleet.advance(20 * MINUTE);
    await fleet.connect('host-1');
    expect((await fleet.run(id, 'host-1')).deliveredAt).toBe(fleet.now);
    await fleet.progress('host-1', 'applying');

    await fleet.advance(600 * SECOND);
    expect((await fleet.run(id, 'host-1')).state).toBe('applying');
    await fleet.advance(1 * SECOND);
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'timed_out', reason: 'no result within 600s' });
  });
});
