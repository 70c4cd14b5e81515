/**
 * An apt package patch rolled out in waves to three real agent processes, each confined to its own
 * throwaway dpkg root (unprivileged, under fakeroot; never this machine's dpkg database), then
 * taken back with one call. And a new version whose postinst fails on the canary: the canary
 * reverts itself, `maxFailures: 0` halts the rollout, and the other hosts are never touched.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, RolloutRequestInput } from '@fleetpatch/shared';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebSpec,
  type DebTestBed,
  type DpkgRoot,
  debTools,
  failWhenMarkerScript,
} from '../packages/agent/test/support/deb-fixtures.js';
import { sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FINAL_APPLY_STATES, FINAL_REVERT_STATES, FleetHarness, hostOf, readJournal } from './support/fleet-harness.js';
import { fptestPatch } from './support/fptest-patch.js';
import { describeNeeding } from './support/requirements.js';

/**
 * The agent policy of a package host: apt may change fptest only (required since i10), and file
 * checks may look at what fptest ships under /usr/share/fptest besides the usual roots.
 */
const PACKAGE_AGENT_CONFIG = (apt: object) => ({
  apt: { ...apt, allowedPackages: ['fptest'] },
  health: { allowedFileRoots: ['/etc', '/opt', '/usr/local/etc', '/usr/share/fptest'] },
});

/** fptest 3.0: like 2.0, but its postinst fails while `$DPKG_ROOT/fptest3-fail-postinst` exists. */
const FAIL_MARKER = 'fptest3-fail-postinst';
const FPTEST_3: DebSpec = {
  name: 'fptest',
  version: '3.0',
  files: { '/usr/share/fptest/VERSION': '3.0\n' },
  conffiles: { '/etc/fptest/fptest.conf': '# shipped by fptest 3.0\nsetting=default\n' },
  postinst: failWhenMarkerScript(FAIL_MARKER),
};

/** A canary, then half, then the rest; the first failure halts. */
const IN_WAVES: Partial<RolloutRequestInput> = { waves: [1, '50%', '100%'], maxFailures: 0 };

interface PackageHost {
  id: string;
  root: DpkgRoot;
  dataDir: string;
}

/** `ii <version>`, `dpkg --audit` clean, and the package's own file says the same version. */
async function expectInstalled(host: PackageHost, version: string): Promise<void> {
  const [query, audit] = await Promise.all([host.root.query('fptest'), host.root.audit()]);
  expect(query, `${host.id}: fptest`).toEqual({ status: 'ii', version });
  expect(audit, `${host.id}: dpkg --audit`).toBe('');
  expect(await readFile(host.root.path('usr/share/fptest/VERSION'), 'utf8')).toBe(`${version}\n`);
}

const sha256File = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

describeNeeding([debTools], 'package rollout in waves', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-pkg-rollout-'));
    [bed, fleet] = await Promise.all([createDebTestBed([FPTEST_3]), FleetHarness.start(join(work, 'coordinator'))]);
  });

  afterEach(async () => {
    await fleet?.stopAgents();
  });

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Three hosts at fptest 1.0, each with its own dpkg root and agent, labelled `group=<group>`. */
  async function startHosts(group: string): Promise<PackageHost[]> {
    const hosts = await Promise.all(
      [1, 2, 3].map(async (n): Promise<PackageHost> => {
        const id = `${group}-${n}`;
        const root = await bed.newRoot(id);
        await root.install(bed.deb('fptest', '1.0'));
        const dir = join(work, id);
        await mkdir(dir, { recursive: true });
        const configFile = join(dir, 'agent.json');
        await writeFile(configFile, JSON.stringify(PACKAGE_AGENT_CONFIG(root.driverOptions)));
        const host = { id, root, dataDir: join(dir, 'agent-data') };
        const token = await fleet.register(id, { group });
        fleet.spawnAgent({
          id,
          joinToken: token,
          dataDir: host.dataDir,
          rootDir: root.root,
          configFile,
          labels: { group },
        });
        return host;
      }),
    );
    await fleet.waitOnline(hosts.map((h) => h.id));
    for (const host of hosts) await expectInstalled(host, '1.0');
    return hosts;
  }

  it('rolls 1.0 → 2.0 out in waves [1, 50%, 100%], then one revert call takes every host back', async () => {
    const hosts = await startHosts('waves');
    const patchId = await fleet.createPatch(fptestPatch('2.0', 'fptest 2.0 fleet-wide'));
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, { target: { labels: { group: 'waves' } }, ...IN_WAVES, bakeSeconds: 0.2 }),
    );
    const plan = await fleet.plan(rolloutId);
    expect(plan.waveSizes).toEqual([1, 1, 1]);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);

    const done = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 90_000);
    expect(done.rollout.state, done.rollout.stateReason ?? '').toBe('succeeded');
    expect(done.waves.map((w) => w.hosts.length)).toEqual([1, 1, 1]);
    for (const host of hosts) {
      const run = hostOf(done, host.id);
      expect(run, host.id).toMatchObject({ state: 'healthy', changed: true });
      await expectInstalled(host, '2.0');
    }

    // Waves really ran one after another: no host of wave n+1 was sent its order before wave n passed.
    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
    for (const [wave, { hosts: waveHosts }] of done.waves.entries()) {
      if (wave === 0) continue;
      const passed = events.find((e) => e.type === 'wave.passed' && e.data?.wave === wave - 1);
      const dispatched = events.find((e) => e.type === 'host.dispatched' && e.hostId === waveHosts[0]?.hostId);
      expect(passed, `wave ${wave} passed event`).toBeDefined();
      expect(dispatched, `wave ${wave + 1} dispatch event`).toBeDefined();
      expect(dispatched?.seq).toBeGreaterThan(passed?.seq ?? Number.POSITIVE_INFINITY);
    }

    await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
    const reverted = await fleet.waitForState(rolloutId, FINAL_REVERT_STATES, 60_000);
    expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
    for (const host of hosts) {
      expect(hostOf(reverted, host.id), host.id).toMatchObject({ state: 'reverted', changed: false });
      await expectInstalled(host, '1.0');
      // The agent's staging dir (its config names it) exists and holds no downloaded .deb any more.
      const staged = host.root.driverOptions.stagingDir;
      expect(staged, `${host.id}: staging dir`).toBeDefined();
      expect(
        (await readdir(staged as string)).filter((f) => f.endsWith('.deb')),
        host.id,
      ).toEqual([]);
    }
  });

  it('a failing postinst on the canary: it reverts itself to 1.0, maxFailures 0 halts, the others are untouched', async () => {
    const hosts = await startHosts('halt');
    const patchId = await fleet.createPatch(fptestPatch('3.0', 'fptest 3.0 (postinst fails on the canary)'));
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, {
        target: { labels: { group: 'halt' } },
        ...IN_WAVES,
        bakeSeconds: 0,
        autoRevert: 'host',
      }),
    );
    const plan = await fleet.plan(rolloutId);
    const canaryId = plan.waves[0]?.hosts[0];
    const canary = hosts.find((h) => h.id === canaryId);
    if (!canary) throw new Error(`plan has no canary among ${hosts.map((h) => h.id).join(', ')}`);
    const others = hosts.filter((h) => h !== canary);
    // Only the canary's postinst fails: the others would take 3.0 fine, so only the halt keeps them out.
    await canary.root.writeFile(FAIL_MARKER, 'fail\n');
    const statusBefore = new Map<string, string>();
    for (const host of others) statusBefore.set(host.id, await sha256File(host.root.path('var/lib/dpkg/status')));

    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    const halted = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 60_000);
    expect(halted.rollout.state, halted.rollout.stateReason ?? '').toBe('halted');
    expect(halted.waves[0]?.hosts.map((h) => h.hostId)).toEqual([canary.id]);
    expect(halted.failures).toBe(1);

    // The canary tried 3.0, its postinst failed, and it went back to its 1.0 snapshot by itself.
    const canaryRun = hostOf(halted, canary.id);
    expect(canaryRun, canaryRun.reason ?? '').toMatchObject({ state: 'failed', changed: false });
    expect(canaryRun.errorCode).toBe('apply_failed');
    // The reason carries the tail of dpkg's output (D3), over several lines.
    expect(canaryRun.reason).toMatch(/dpkg exited with status 1.*3\.0.*reverted to the snapshot/s);
    await expectInstalled(canary, '1.0');
    const canaryJournal = await readJournal(canary.dataDir);
    const canaryEntry = canaryJournal.find((e) => e.orderId === canaryRun.orderId);
    expect(canaryEntry).toMatchObject({
      kind: 'apply',
      phase: 'done',
      changed: false,
      result: { outcome: 'failed' },
    });

    // The other two never heard of this rollout: queued, no order, same dpkg database, same journal.
    for (const host of others) {
      const run = hostOf(halted, host.id);
      expect(run, host.id).toMatchObject({ state: 'queued', changed: false, orderId: null });
      await expectInstalled(host, '1.0');
      expect(await sha256File(host.root.path('var/lib/dpkg/status')), `${host.id}: dpkg status`).toBe(
        statusBefore.get(host.id),
      );
      const journal = await readJournal(host.dataDir);
      expect(
        journal.filter((e) => e.order?.rolloutId === rolloutId),
        `${host.id}: journal entries of this rollout`,
      ).toEqual([]);
    }
  });
});
