/**
 * A rehearsed revert of a package change on real dpkg: the canary installs fptest 2.0, passes its
 * health check, goes back to 1.0 from its snapshot, is compared with its prior state (version,
 * architecture, status) and checked healthy, installs 2.0 again, and the rollout carries on to the
 * next wave. Each host is a real agent process confined to its own throwaway dpkg root (fakeroot;
 * never this machine's dpkg database).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from '../packages/agent/test/support/deb-fixtures.js';
import { FINAL_APPLY_STATES, FleetHarness, hostOf } from './support/fleet-harness.js';
import { fptestPatch } from './support/fptest-patch.js';
import { describeNeeding } from './support/requirements.js';

const HOSTS = ['pkg-1', 'pkg-2'];

describeNeeding([debTools], 'a rehearsed revert of a package change, on real dpkg', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;
  const roots = new Map<string, DpkgRoot>();

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-pkg-rehearsal-'));
    [bed, fleet] = await Promise.all([createDebTestBed(), FleetHarness.start(join(work, 'coordinator'))]);
    for (const id of HOSTS) {
      const root = await bed.newRoot(id);
      await root.install(bed.deb('fptest', '1.0'));
      roots.set(id, root);
      const dir = join(work, id);
      await mkdir(dir, { recursive: true });
      const configFile = join(dir, 'agent.json');
      await writeFile(
        configFile,
        JSON.stringify({
          apt: { ...root.driverOptions, allowedPackages: ['fptest'] },
          health: { allowedFileRoots: ['/etc', '/usr/share/fptest'] },
        }),
      );
      const joinToken = await fleet.register(id, { group: 'rehearse' });
      fleet.spawnAgent({
        id,
        joinToken,
        dataDir: join(dir, 'data'),
        rootDir: root.root,
        configFile,
        labels: { group: 'rehearse' },
      });
    }
    await fleet.waitOnline(HOSTS);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('the canary goes 1.0 → 2.0 → 1.0 (compared, healthy) → 2.0; then the next wave; both end at 2.0', async () => {
    const patchId = await fleet.createPatch(fptestPatch('2.0', 'fptest 2.0, its revert rehearsed'));
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { group: 'rehearse' } },
      waves: [1, '100%'],
      rehearseRevert: true,
    });
    const done = await fleet.waitForState(id, FINAL_APPLY_STATES, 90_000);
    expect(done.rollout.state, done.rollout.stateReason ?? '').toBe('succeeded');

    const canaryId = done.waves[0]?.hosts[0]?.hostId as string;
    const otherId = HOSTS.find((h) => h !== canaryId) as string;
    const canary = hostOf(done, canaryId);
    expect(canary).toMatchObject({ state: 'healthy', changed: true });
    expect(canary.rehearsal).toMatchObject({ ok: true, differences: [], healthyAfterRevert: true });
    // What the revert put back is what was there before: fptest 1.0, installed.
    expect(canary.rehearsal?.restored).toEqual(canary.rehearsal?.prior);
    expect(JSON.stringify(canary.rehearsal?.prior)).toContain('"1.0"');
    expect(hostOf(done, otherId).rehearsal).toBeNull();

    for (const host of HOSTS) {
      const root = roots.get(host) as DpkgRoot;
      expect(await root.query('fptest'), host).toEqual({ status: 'ii', version: '2.0' });
      expect(await root.audit(), host).toBe('');
      expect(await readFile(root.path('usr/share/fptest/VERSION'), 'utf8')).toBe('2.0\n');
    }
    // dpkg's own log on the canary: installed 2.0, went back to 1.0, installed 2.0 again.
    const log = await readFile((roots.get(canaryId) as DpkgRoot).path('var/log/dpkg.log'), 'utf8');
    const upgrades = [...log.matchAll(/ upgrade fptest:\S+ (\S+) (\S+)$/gm)].map((m) => `${m[1]} → ${m[2]}`);
    expect(upgrades).toEqual(['1.0 → 2.0', '2.0 → 1.0', '1.0 → 2.0']);

    // The second wave was sent its order only after the canary's rehearsal had passed.
    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${id}/events?limit=1000`);
    const rehearsed = events.find((e) => e.type === 'host.healthy' && e.hostId === canaryId);
    const otherDispatched = events.find((e) => e.type === 'host.dispatched' && e.hostId === otherId);
    expect(rehearsed?.data?.rehearsal).toMatchObject({ ok: true });
    expect(otherDispatched?.seq).toBeGreaterThan(rehearsed?.seq ?? Number.POSITIVE_INFINITY);
  }, 120_000);
});
