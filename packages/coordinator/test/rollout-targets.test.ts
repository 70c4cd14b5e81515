/**
 * Specification of the rollout engine, by example: target selection. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { refusal } from './support/refusal.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

// ---- targets -----------------------------------------------------------------------------------

describe('targets', () => {
  async function mixedFleet(): Promise<SimulatedFleet> {
    const fleet = new SimulatedFleet();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web', env: 'prod' } });
    await fleet.addHosts(['web-3'], { labels: { role: 'web', env: 'prod', tier: 'legacy' } });
    await fleet.addHosts(['web-4'], { labels: { role: 'web', env: 'staging' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['db-1'], { labels: { role: 'db', env: 'prod' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['new-1'], { labels: { role: 'web', env: 'prod' }, online: false }); // never said hello: no facts
    return fleet;
  }
  const planned = (fleet: SimulatedFleet, id: string) =>
    new RolloutView(fleet.store, () => true)
      .plan(id)
      .waves.flatMap((w) => w.hosts)
      .sort();

  it('labels are all-of, excludeLabels any-of', async () => {
    const fleet = await mixedFleet();
    const { id } = fleet.create({
      target: { labels: { role: 'web', env: 'prod' }, excludeLabels: { tier: 'legacy' } },
    });
    expect(planned(fleet, id)).toEqual(['new-1', 'web-1', 'web-2']);
    const { id: both } = fleet.create({
      target: { labels: { role: 'web' }, excludeLabels: { tier: 'legacy', env: 'staging' } },
    });
    expect(planned(fleet, both)).toEqual(['new-1', 'web-1', 'web-2']);
  });

  it('facts select only hosts that reported matching facts', async () => {
    const fleet = await mixedFleet();
    const { id } = fleet.create({ target: { facts: { distro: 'ubuntu' } } });
    expect(planned(fleet, id)).toEqual(['db-1', 'web-4']);
    const { id: debian } = fleet.create({ target: { facts: { distro: 'debian' }, labels: { env: 'prod' } } });
    expect(planned(fleet, debian)).toEqual(['web-1', 'web-2', 'web-3']);
  });

  it('are frozen at start: an agent registered afterwards is not added', async () => {
    const fleet = new SimulatedFleet();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web' } });
    const id = await fleet.launch({ target: { labels: { role: 'web' } }, waves: [1, '100%'] });
    await fleet.addHosts(['web-3'], { labels: { role: 'web' } });

    await fleet.finishAll(['web-1']);
    await fleet.finishAll(['web-2']);

    expect(fleet.state(id)).toBe('succeeded');
    expect(Object.keys(fleet.hostStates(id))).toEqual(['web-1', 'web-2']);
    expect(fleet.rollout(id).hostCount).toBe(2);
    expect(fleet.sentOf('order.apply', 'web-3')).toEqual([]);
  });

  it('unknown host ids are refused at create, and nothing is written', async () => {
    const fleet = new SimulatedFleet();
    await fleet.addHosts(['web-1']);
    const before = fleet.dump();
    const err = refusal(() => fleet.create({ target: { hostIds: ['web-1', 'web-9', 'wbe-1'] } }));
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.details).toMatchObject({ unknown: ['web-9', 'wbe-1'] });
    expect(fleet.dump()).toBe(before);
  });
});
