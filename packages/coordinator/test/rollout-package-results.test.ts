/**
 * What a package change resolved to on each host is kept: the packages of an apply result (from, to,
 * where the prior .deb was kept) are stored with the host run, shown in the rollout's status and the
 * host's history, and written in the audit trail; a retry forgets them until its own result. A host
 * with none of a source's binaries ends not_applicable with the agent's reason, and is no failure.
 */
import type { OrderResultBody, PackageMove } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { fleetWithPackagePatches, SOURCE_PATCH } from './support/package-patches.js';
import type { SimulatedFleet } from './support/simulated-fleet.js';
import { hosts } from './support/simulated-fleet.js';

const MOVED: PackageMove[] = [
  { name: 'libssl3', from: '3.0.14-1~deb12u2', to: '3.0.15-1~deb12u1', snapshot: 'apt-cache' },
  { name: 'openssl', from: '3.0.14-1~deb12u2', to: '3.0.15-1~deb12u1+b1', snapshot: 'dpkg-repack' },
];
const NOTHING_HERE = 'no binary package of source openssl is installed on this host';

/** The host answers its open apply order with `result` (the order id and time filled in). */
async function answer(
  fleet: SimulatedFleet,
  hostId: string,
  result: Omit<OrderResultBody, 'orderId' | 'finishedAt'>,
): Promise<void> {
  const entry = fleet.agent(hostId).openApply();
  if (!entry) throw new Error(`${hostId} holds no open apply order`);
  entry.phase = 'done';
  entry.result = { ...result, orderId: entry.orderId, finishedAt: new Date(fleet.now).toISOString() };
  fleet.engine.onOrderResult(hostId, entry.result);
  await fleet.engine.whenIdle();
}

describe('the resolved package set of each host', () => {
  it('is stored, shown in status and events; not_applicable is its own honest state and the rollout succeeds', async () => {
    const fleet = await fleetWithPackagePatches();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ patchId: SOURCE_PATCH, waves: ['100%'], maxFailures: 0 });

    await answer(fleet, 'host-1', { outcome: 'healthy', changed: true, packages: MOVED });
    await answer(fleet, 'host-2', { outcome: 'not_applicable', changed: false, reason: NOTHING_HERE });
    await fleet.advance(1000);

    expect(await fleet.state(id)).toBe('succeeded');
    const hostViews = (await new RolloutView(fleet.store, () => true).status(id)).waves.flatMap((w) => w.hosts);
    expect(hostViews).toEqual([
      expect.objectContaining({ hostId: 'host-1', state: 'healthy', changed: true, packages: MOVED }),
      expect.objectContaining({ hostId: 'host-2', state: 'not_applicable', changed: false, reason: NOTHING_HERE }),
    ]);
    expect(hostViews[1]).not.toHaveProperty('packages');
    expect((await fleet.run(id, 'host-2')).countedFailure).toBe(false);

    const events = await fleet.events(id);
    expect(events.find((e) => e.hostId === 'host-1' && e.type === 'host.healthy')?.data).toMatchObject({
      packages: MOVED,
    });
    expect(events.find((e) => e.hostId === 'host-2' && e.type === 'host.not_applicable')?.data).toMatchObject({
      reason: NOTHING_HERE,
    });
  });

  it('a failed set keeps what it resolved to; a retry forgets it until the new result', async () => {
    const fleet = await fleetWithPackagePatches();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ patchId: SOURCE_PATCH, maxFailures: 0 });
    await answer(fleet, 'host-1', {
      outcome: 'failed',
      changed: false,
      errorCode: 'apply_failed',
      reason: 'postinst of openssl failed',
      packages: MOVED,
    });
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.run(id, 'host-1')).packages).toEqual(MOVED);

    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    expect(await fleet.run(id, 'host-1')).toMatchObject({ state: 'dispatched', packages: null });
  });
});
