/**
 * Specification of the rollout engine, by example: target selection. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode, RolloutRequestSchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { RolloutView } from '../src/engine/rollout-view.js';
import { refusal } from './support/refusal.js';
import { PATCH_ID, SimulatedFleet } from './support/simulated-fleet.js';

/** The hosts a rollout's plan resolves now, sorted. */
const planned = async (fleet: SimulatedFleet, id: string) =>
  (await new RolloutView(fleet.store, () => true).plan(id)).waves.flatMap((w) => w.hosts).sort();

// ---- targets -----------------------------------------------------------------------------------

describe('targets', () => {
  async function mixedFleet(): Promise<SimulatedFleet> {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web', env: 'prod' } });
    await fleet.addHosts(['web-3'], { labels: { role: 'web', env: 'prod', tier: 'legacy' } });
    await fleet.addHosts(['web-4'], { labels: { role: 'web', env: 'staging' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['db-1'], { labels: { role: 'db', env: 'prod' }, facts: { distro: 'ubuntu' } });
    await fleet.addHosts(['new-1'], { labels: { role: 'web', env: 'prod' }, online: false }); // never said hello: no facts
    return fleet;
  }

  it('labels are all-of, excludeLabels any-of', async () => {
    const fleet = await mixedFleet();
    const { id } = await fleet.create({
      target: { labels: { role: 'web', env: 'prod' }, excludeLabels: { tier: 'legacy' } },
    });
    expect(await planned(fleet, id)).toEqual(['new-1', 'web-1', 'web-2']);
    const { id: both } = await fleet.create({
      target: { labels: { role: 'web' }, excludeLabels: { tier: 'legacy', env: 'staging' } },
    });
    expect(await planned(fleet, both)).toEqual(['new-1', 'web-1', 'web-2']);
  });

  it('facts select only hosts that reported matching facts', async () => {
    const fleet = await mixedFleet();
    const { id } = await fleet.create({ target: { facts: { distro: 'ubuntu' } } });
    expect(await planned(fleet, id)).toEqual(['db-1', 'web-4']);
    const { id: debian } = await fleet.create({ target: { facts: { distro: 'debian' }, labels: { env: 'prod' } } });
    expect(await planned(fleet, debian)).toEqual(['web-1', 'web-2', 'web-3']);
  });

  it('are frozen at start: an agent registered afterwards is not added', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1', 'web-2'], { labels: { role: 'web' } });
    const id = await fleet.launch({ target: { labels: { role: 'web' } }, waves: [1, '100%'] });
    await fleet.addHosts(['web-3'], { labels: { role: 'web' } });

    await fleet.finishAll(['web-1']);
    await fleet.finishAll(['web-2']);

    expect(await fleet.state(id)).toBe('succeeded');
    expect(Object.keys(await fleet.hostStates(id))).toEqual(['web-1', 'web-2']);
    expect((await fleet.rollout(id)).hostCount).toBe(2);
    expect(fleet.sentOf('order.apply', 'web-3')).toEqual([]);
  });

  it('unknown host ids are refused at create, and nothing is written', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const before = await fleet.dump();
    const err = await refusal(async () => await fleet.create({ target: { hostIds: ['web-1', 'web-9', 'wbe-1'] } }));
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.details).toMatchObject({ unknown: ['web-9', 'wbe-1'] });
    expect(await fleet.dump()).toBe(before);
  });

  it('a list missing thousands of hosts is refused with a message naming ten; the details name them all', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1']);
    const missing = Array.from({ length: 2_000 }, (_, i) => `gone-${i}`);
    const err = await refusal(async () => await fleet.create({ target: { hostIds: ['web-1', ...missing] } }));
    expect(err.message).toBe(`unknown host ids: ${missing.slice(0, 10).join(', ')} and 1990 more`);
    expect(err.details).toMatchObject({ path: 'target.hostIds', unknown: missing });
  });
});

// ---- labels: what an admin set, and what a host says ------------------------------------------

describe('labels', () => {
  /**
   * db-1's admin labels say role=db, its agent reports role=web; spare-1 has no admin labels and
   * reports role=web and freeze=yes (a compromised host, or a stale agent config).
   */
  async function liarFleet(): Promise<SimulatedFleet> {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['web-1'], { labels: { role: 'web', env: 'prod' } });
    await fleet.addHosts(['db-1'], {
      labels: { role: 'db', env: 'prod' },
      reportedLabels: { role: 'web', env: 'prod' },
    });
    await fleet.addHosts(['spare-1'], { labels: {}, reportedLabels: { role: 'web', freeze: 'yes' } });
    return fleet;
  }

  it('match what an admin set, never what the host reports: a host cannot report its way into a target', async () => {
    const fleet = await liarFleet();
    expect(await planned(fleet, (await fleet.create({ target: { labels: { role: 'web' } } })).id)).toEqual(['web-1']);
    expect(await planned(fleet, (await fleet.create({ target: { labels: { role: 'db' } } })).id)).toEqual(['db-1']);

    const id = await fleet.launch({ target: { labels: { role: 'web' } } });
    expect(Object.keys(await fleet.hostStates(id))).toEqual(['web-1']);
    expect(fleet.appliedHosts()).toEqual(['web-1']);
  });

  it('reportedLabels select on what the host says, narrowing hosts an admin named', async () => {
    const fleet = await liarFleet();
    const { id } = await fleet.create({ target: { labels: { env: 'prod' }, reportedLabels: { role: 'web' } } });
    expect(await planned(fleet, id)).toEqual(['db-1', 'web-1']);
    const { id: named } = await fleet.create({
      target: { hostIds: ['db-1', 'spare-1'], reportedLabels: { role: 'web' } },
    });
    expect(await planned(fleet, named)).toEqual(['db-1', 'spare-1']);
    // All-of, like labels: spare-1 says freeze=yes, but it has no admin label env=prod.
    const { id: both } = await fleet.create({ target: { labels: { env: 'prod' }, reportedLabels: { freeze: 'yes' } } });
    expect(await planned(fleet, both)).toEqual([]);
  });

  it('reportedLabels alone, or with only all, facts or empty labels, are refused: they would let any host select itself', () => {
    for (const target of [
      { reportedLabels: { role: 'web' } },
      { all: true, reportedLabels: { role: 'web' } },
      { facts: { os: 'linux' }, reportedLabels: { role: 'web' } },
      { labels: {}, reportedLabels: { role: 'web' } },
    ]) {
      const parsed = RolloutRequestSchema.safeParse({ patchId: PATCH_ID, target });
      expect(parsed.success, JSON.stringify(target)).toBe(false);
      expect(parsed.error?.issues.map((i) => i.path.join('.'))).toContain('target.reportedLabels');
    }
  });

  it('excludeLabels remove a host when its admin labels or its own report match: its word can keep it out, never bring it in', async () => {
    const fleet = await liarFleet();
    // spare-1 reports freeze=yes: out. db-1's admin labels say role=db: out, whatever it reports.
    const { id } = await fleet.create({
      target: { hostIds: ['web-1', 'db-1', 'spare-1'], excludeLabels: { freeze: 'yes', role: 'db' } },
    });
    expect(await planned(fleet, id)).toEqual(['web-1']);
    // db-1 reports role=web; excluding role=web keeps it out even though its admin says db.
    const { id: web } = await fleet.create({ target: { labels: { env: 'prod' }, excludeLabels: { role: 'web' } } });
    expect(await planned(fleet, web)).toEqual([]);
  });
});
