import { hosts, SimulatedFleet } from './simulated-fleet.js';

/**
 * Three hosts in one wave, no failure tolerated, autoRevert `wave`: host-1 is healthy, then host-2
 * fails, which halts the rollout and sends host-1 a revert while host-3 is still in flight.
 */
export async function haltedWithWaveRevert(): Promise<{ fleet: SimulatedFleet; id: string }> {
  const fleet = new SimulatedFleet();
  await fleet.addHosts(hosts(3));
  const id = await fleet.launch({ waves: ['100%'], maxFailures: 0, autoRevert: 'wave' });
  await fleet.finish('host-1');
  await fleet.finish('host-2', 'failed');
  return { fleet, id };
}
