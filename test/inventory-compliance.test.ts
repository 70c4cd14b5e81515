/**
 * The package inventory end to end: real agent processes read real dpkg databases (throwaway roots
 * holding real .deb packages, installed unprivileged under fakeroot) and report them at hello; a
 * dpkg run no agent asked for reaches the coordinator as a diff; compliance says exposed, a rollout
 * targeted at the exposed hosts fixes them, and compliance says fixed — through the API and the CLI.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ComplianceReport, HostCompliance, HostPackages, PackageVersions } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebSpec,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from '../packages/agent/test/support/deb-fixtures.js';
import { sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { type CliResult, runCli } from './support/cli-process.js';
import {
  ADMIN_TOKEN,
  FINAL_APPLY_STATES,
  FINAL_REVERT_STATES,
  FleetHarness,
  jsonLines,
} from './support/fleet-harness.js';
import { fptestPatch } from './support/fptest-patch.js';
import { describeNeeding } from './support/requirements.js';

/** A library built from another source, and a binNMU (its binary version is not its source's). */
const EXTRA_SPECS: DebSpec[] = [
  { name: 'libfpssl1', version: '1.0-1', source: 'fpssl', files: { '/usr/share/libfpssl1/README': 'ssl\n' } },
  { name: 'fpbin', version: '1.0-1+b1', source: 'fpbinsrc (1.0-1)', files: { '/usr/share/fpbin/README': 'bin\n' } },
];

describeNeeding([debTools], 'package inventory and compliance', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;
  /** fptest 1.0, libfpssl1 and fpbin; apt may change fptest. */
  let web: DpkgRoot;
  /** fpother only. */
  let db: DpkgRoot;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-inventory-e2e-'));
    [bed, fleet] = await Promise.all([createDebTestBed(EXTRA_SPECS), FleetHarness.start(join(work, 'coordinator'))]);
    [web, db] = await Promise.all([bed.newRoot('web'), bed.newRoot('db')]);
    for (const deb of [bed.deb('fptest', '1.0'), bed.deb('libfpssl1', '1.0-1'), bed.deb('fpbin', '1.0-1+b1')])
      await web.install(deb);
    await db.install(bed.deb('fpother', '1.0'));

    // Its root is the dpkg root, so that the patch's file check sees what fptest installs.
    await startAgent(
      'web-1',
      {
        apt: { ...web.driverOptions, allowedPackages: ['fptest'] },
        health: { allowedFileRoots: ['/etc', '/usr/share/fptest'] },
        inventory: { debounceMs: 200 },
      },
      web.root,
    );
    await startAgent('db-1', { inventory: { dpkgRoot: db.root, debounceMs: 200 } });
    // No dpkg database at all: it reports none, and says so.
    await startAgent('edge-1', { inventory: { dpkgRoot: join(work, 'no-dpkg-here') } });
    await fleet.waitOnline(['web-1', 'db-1', 'edge-1']);
  });

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function startAgent(id: string, config: object, rootDir = join(work, id, 'root')): Promise<void> {
    const dir = join(work, id);
    await mkdir(dir, { recursive: true });
    const configFile = join(dir, 'agent.json');
    await writeFile(configFile, JSON.stringify(config));
    fleet.spawnAgent({
      id,
      joinToken: await fleet.register(id),
      dataDir: join(dir, 'data'),
      rootDir,
      configFile,
    });
  }

  const packagesOf = (id: string) => fleet.api.get<HostPackages>(`/v1/hosts/${id}/packages`);
  const compliance = () => fleet.api.get<ComplianceReport>('/v1/compliance?source=fptest&fixed=2.0');
  const statuses = async () =>
    Object.fromEntries((await compliance()).hosts.map((h: HostCompliance) => [h.hostId, h.status]));

  it('each agent reports its installed packages at hello, with their source packages', async () => {
    await expect
      .poll(async () => (await packagesOf('web-1')).inventory, { timeout: 20_000 })
      .toMatchObject({
        state: 'reported',
        current: true,
      });
    const { packages } = await packagesOf('web-1');
    expect(packages).toEqual([
      {
        name: 'fpbin',
        version: '1.0-1+b1',
        architecture: 'all',
        source: 'fpbinsrc',
        sourceVersion: '1.0-1',
        status: 'ii',
      },
      { name: 'fptest', version: '1.0', architecture: 'all', source: 'fptest', sourceVersion: '1.0', status: 'ii' },
      {
        name: 'libfpssl1',
        version: '1.0-1',
        architecture: 'all',
        source: 'fpssl',
        sourceVersion: '1.0-1',
        status: 'ii',
      },
    ]);
    await expect.poll(async () => (await packagesOf('db-1')).packages.map((p) => p.name)).toEqual(['fpother']);
    await expect
      .poll(async () => (await packagesOf('edge-1')).inventory)
      .toMatchObject({
        state: 'unavailable',
        reason: expect.stringContaining('no dpkg database at'),
      });
    const bySource = await fleet.api.get<PackageVersions>('/v1/packages?source=fpssl');
    expect(bySource.versions).toEqual([expect.objectContaining({ name: 'libfpssl1', hosts: 1 })]);
  });

  it('a dpkg run nobody asked fleetpatch for reaches the coordinator as a diff', async () => {
    await expect.poll(async () => (await packagesOf('web-1')).inventory.current, { timeout: 20_000 }).toBe(true);
    await web.install(bed.deb('fpnew', '1.0'));
    await expect
      .poll(async () => (await packagesOf('web-1')).packages.map((p) => p.name), { timeout: 20_000 })
      .toContain('fpnew');
    const web1 = jsonLines(fleet.agentLogs()).filter((l) => l.component === 'inventory');
    expect(web1.find((l) => l.msg === 'installed packages changed')).toMatchObject({ changed: 1, removed: 0 });
    // Sent as a diff the coordinator applied: it never had to ask web-1 for everything again.
    expect(jsonLines(fleet.coordinator.logs).filter((l) => String(l.msg).includes('asking for all of it'))).toEqual([]);
  });

  it('compliance: exposed; a rollout to the exposed hosts; fixed — and exposed again after the revert', async () => {
    await expect.poll(statuses, { timeout: 20_000 }).toEqual({
      'web-1': 'exposed',
      'db-1': 'not_installed',
      'edge-1': 'unknown',
    });
    const before = await fleetpatchCli(['compliance', '--source', 'fptest', '--fixed', '2.0']);
    expect(before.code, before.stderr).toBe(3);
    expect(before.stdout).toMatch(/^fptest < 2\.0: 1 exposed, 1 unknown, 0 fixed, 1 not installed \(3 hosts\)/);
    expect(before.stdout).toMatch(/web-1\s+exposed\s+fptest 1\.0/);

    const patchId = await fleet.createPatch(fptestPatch('2.0', 'fptest 2.0: the fix'));
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, { target: { exposedTo: { source: 'fptest', fixed: '2.0' } }, waves: ['100%'] }),
    );
    const plan = await fleet.plan(rolloutId);
    expect(plan.waves.flatMap((w) => w.hosts)).toEqual(['web-1']);
    expect(plan.exposedTo?.withoutInventory).toEqual(['edge-1']);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    const done = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 90_000);
    expect(done.rollout.state, done.rollout.stateReason ?? '').toBe('succeeded');
    expect(done.counts).toEqual({ healthy: 1 });
    expect(done.compliance?.url).toBe('/v1/compliance?source=fptest&fixed=2.0');

    await expect.poll(statuses, { timeout: 20_000 }).toEqual({
      'web-1': 'fixed',
      'db-1': 'not_installed',
      'edge-1': 'unknown',
    });
    const after = await fleetpatchCli(['compliance', '--source', 'fptest', '--fixed', '2.0', '--json']);
    expect(after.code, after.stderr).toBe(4); // none exposed, but edge-1 cannot be judged
    expect((JSON.parse(after.stdout) as ComplianceReport).counts).toEqual({
      fixed: 1,
      exposed: 0,
      not_installed: 1,
      unknown: 1,
    });

    await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
    const reverted = await fleet.waitForState(rolloutId, FINAL_REVERT_STATES, 60_000);
    expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
    await expect.poll(statuses, { timeout: 20_000 }).toMatchObject({ 'web-1': 'exposed' });
  });

  it('an agent that goes away leaves its hosts unknown, with what they last said', async () => {
    await fleet.stopAgents();
    await expect
      .poll(async () => (await compliance()).hosts.find((h) => h.hostId === 'web-1'))
      .toMatchObject({
        status: 'unknown',
        online: false,
        lastKnown: 'exposed',
        reason: expect.stringMatching(/^offline since /),
      });
  });

  function fleetpatchCli(args: string[]): Promise<CliResult> {
    return runCli(fleet.coordinator.url, args, { token: ADMIN_TOKEN });
  }
});
