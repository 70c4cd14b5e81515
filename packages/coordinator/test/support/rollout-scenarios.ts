import { hosts, SECOND, SimulatedFleet } from './simulated-fleet.js';

/**
 * Three hosts in one wave, no failure tolerated, autoRevert `wave`: host-1 is healthy, then host-2
 * fails, which halts the rollout and sends host-1 a revert while host-3 is still in flight.
 */
export async function haltedWithWaveRevert(): Promise<{ fleet: SimulatedFleet; id: string }> {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(hosts(3));
  const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'wave' });
  await fleet.finish('host-1');
  await fleet.finish('host-2', 'failed');
  return { fleet, id };
}

/**
 * host-1 is offline when its one-host rollout (policy wait, 60 s to deliver, no failure tolerated)
 * starts, and stays away past the deadline: timed_out, the rollout halted, the order never delivered.
 */
export async function timedOutBeforeDelivery(): Promise<{ fleet: SimulatedFleet; id: string }> {
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1'], { online: false });
  const id = await fleet.launch({
    waves: ['100%'],
    maxFailures: 0,
    offline: { mode: 'wait', deliveryDeadlineSeconds: 60 },
  });
  await fleet.advance(61 * SECOND);
  return { fleet, id };
}
