/**
 * A security fix named the way an advisory names it — source package `fpsrc`, fixed version — rolled
 * out to three real agent processes, each confined to its own throwaway dpkg root (unprivileged,
 * under fakeroot; never this machine's dpkg database). `fpsrc` builds two binaries: `fpsrc-bin` and
 * `libfpsrc1`, whose 1.0-2 is a binNMU (`1.0-2+b1`, `Source: fpsrc (1.0-2)`). One host has both, one
 * only the library, one neither: the first two move as sets, the third is not_applicable, the rollout
 * succeeds, and one revert call takes both sets back together. Then a fix whose fpsrc-bin postinst
 * fails on the canary: the canary puts both members back, maxFailures 0 halts, the other host is
 * untouched.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, PackageMove, PatchSpecInput } from '@fleetpatch/shared';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebSpec,
  type DebTestBed,
  type DpkgRoot,
  debTools,
  failWhenMarkerScript,
} from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FINAL_APPLY_STATES, FINAL_REVERT_STATES, FleetHarness, hostOf } from './support/fleet-harness.js';
import { describeNeeding } from './support/requirements.js';

/** fpsrc-bin 1.0-3's postinst fails while `$DPKG_ROOT/fpsrc3-fail-postinst` exists; 1.0-1's never does. */
const FAIL_MARKER = 'fpsrc3-fail-postinst';

function fpsrcSpecs(): DebSpec[] {
  const bin = (version: string, extra: Partial<DebSpec> = {}): DebSpec => ({
    name: 'fpsrc-bin',
    version,
    source: 'fpsrc',
    depends: 'libfpsrc1',
    files: { '/usr/share/fpsrc/bin-VERSION': `${version}\n` },
    conffiles: { '/etc/fpsrc.conf': `# fpsrc ${version}\n` },
    ...extra,
  });
  const lib = (version: string, source: string): DebSpec => ({
    name: 'libfpsrc1',
    version,
    source,
    files: { '/usr/lib/fpsrc/lib-VERSION': `${version}\n` },
  });
  return [
    bin('1.0-1'),
    bin('1.0-2'),
    bin('1.0-3', { postinst: failWhenMarkerScript(FAIL_MARKER) }),
    lib('1.0-1', 'fpsrc'),
    lib('1.0-2+b1', 'fpsrc (1.0-2)'),
    lib('1.0-3', 'fpsrc'),
  ];
}

/** The agent policy of these hosts: apt may change the binaries of source fpsrc, and nothing else. */
const AGENT_CONFIG = (apt: object) => ({ apt: { ...apt, allowedSourcePackages: ['fpsrc'] } });

function sourcePatch(version: string, title: string): PatchSpecInput {
  return {
    ...samplePackagePatch({ title, name: 'fpsrc-bin', version }),
    change: { kind: 'package', manager: 'apt', source: 'fpsrc', version },
  };
}

interface SetHost {
  id: string;
  root: DpkgRoot;
}

/** `name` → `status version` for both binaries (undefined: not installed), and `dpkg --audit` clean. */
async function installed(host: SetHost): Promise<Record<string, string | undefined>> {
  expect(await host.root.audit(), `${host.id}: dpkg --audit`).toBe('');
  const out: Record<string, string | undefined> = {};
  for (const name of ['fpsrc-bin', 'libfpsrc1']) {
    const q = await host.root.query(name);
    out[name] = q && `${q.status} ${q.version}`;
  }
  return out;
}

describeNeeding([debTools], 'package set rollout by source package', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-set-rollout-'));
    [bed, fleet] = await Promise.all([createDebTestBed(fpsrcSpecs()), FleetHarness.start(join(work, 'coordinator'))]);
  }, 120_000);

  afterEach(async () => {
    await fleet?.stopAgents();
  });

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** One host per seed, each with its own dpkg root and agent, labelled `group=<group>`. */
  async function startHosts(group: string, seeds: Record<string, Array<[string, string]>>): Promise<SetHost[]> {
    const hosts = await Promise.all(
      Object.entries(seeds).map(async ([suffix, seed]): Promise<SetHost> => {
        const id = `${group}-${suffix}`;
        const root = await bed.newRoot(id);
        for (const [name, version] of seed) await root.install(bed.deb(name, version));
        const dir = join(work, id);
        await mkdir(dir, { recursive: true });
        const configFile = join(dir, 'agent.json');
        await writeFile(configFile, JSON.stringify(AGENT_CONFIG(root.driverOptions)));
        fleet.spawnAgent({
          id,
          joinToken: await fleet.register(id, { group }),
          dataDir: join(dir, 'agent-data'),
          rootDir: root.root,
          configFile,
          labels: { group },
        });
        return { id, root };
      }),
    );
    await fleet.waitOnline(hosts.map((h) => h.id));
    return hosts;
  }

  const OLD: Array<[string, string]> = [
    ['libfpsrc1', '1.0-1'],
    ['fpsrc-bin', '1.0-1'],
  ];

  it('by source: the hosts with its binaries move as sets (binNMU included), the other is not_applicable; one revert brings both sets back', async () => {
    const [both, libOnly, none] = await startHosts('src', {
      both: OLD,
      lib: [['libfpsrc1', '1.0-1']],
      none: [['fptest', '1.0']],
    });
    if (!both || !libOnly || !none) throw new Error('three hosts expected');
    const patchId = await fleet.createPatch(sourcePatch('1.0-2', 'fpsrc 1.0-2 (FPSA-1)'));
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, { target: { labels: { group: 'src' } }, waves: ['100%'], maxFailures: 0 }),
    );

    // Preflight shows the set each host resolved the source to.
    const preflight = await runCli(fleet.coordinator.url, ['rollout', 'preflight', rolloutId], { token: ADMIN_TOKEN });
    expect(preflight.code, preflight.stderr).toBe(0);
    const line = (host: string) => preflight.stdout.split('\n').find((l) => l.startsWith(`${host} `)) ?? '';
    expect(line(both.id)).toMatch(/would_apply +fpsrc-bin 1\.0-1 → 1\.0-2, libfpsrc1 1\.0-1 → 1\.0-2\+b1 /);
    expect(line(libOnly.id)).toMatch(/would_apply +libfpsrc1 1\.0-1 → 1\.0-2\+b1 /);
    expect(line(none.id)).toMatch(/not_applicable .*no binary package of source fpsrc is installed/);

    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    const done = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 90_000);
    expect(done.rollout.state, done.rollout.stateReason ?? '').toBe('succeeded');
    const moved = (name: string, from: string, to: string): PackageMove =>
      expect.objectContaining({ name, from, to, snapshot: expect.any(String) }) as PackageMove;
    expect(hostOf(done, both.id)).toMatchObject({
      state: 'healthy',
      changed: true,
      packages: [moved('fpsrc-bin', '1.0-1', '1.0-2'), moved('libfpsrc1', '1.0-1', '1.0-2+b1')],
    });
    expect(hostOf(done, libOnly.id)).toMatchObject({
      state: 'healthy',
      changed: true,
      packages: [moved('libfpsrc1', '1.0-1', '1.0-2+b1')],
    });
    expect(hostOf(done, none.id)).toMatchObject({
      state: 'not_applicable',
      changed: false,
      reason: expect.stringMatching(/no binary package of source fpsrc is installed/),
    });
    expect(done.failures).toBe(0);
    expect(await installed(both)).toEqual({ 'fpsrc-bin': 'ii 1.0-2', libfpsrc1: 'ii 1.0-2+b1' });
    expect(await installed(libOnly)).toEqual({ 'fpsrc-bin': undefined, libfpsrc1: 'ii 1.0-2+b1' });
    expect(await installed(none)).toEqual({ 'fpsrc-bin': undefined, libfpsrc1: undefined });

    // The status command and the audit trail say the same.
    const status = await runCli(fleet.coordinator.url, ['rollout', 'status', rolloutId], { token: ADMIN_TOKEN });
    expect(status.stdout).toContain(`${none.id} not_applicable: no binary package of source fpsrc is installed`);
    expect(status.stdout).toContain(`packages fpsrc-bin 1.0-1 → 1.0-2, libfpsrc1 1.0-1 → 1.0-2+b1: ${both.id}`);
    expect(status.stdout).toContain(`packages libfpsrc1 1.0-1 → 1.0-2+b1: ${libOnly.id}`);
    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
    expect(events.find((e) => e.hostId === both.id && e.type === 'host.healthy')?.data?.packages).toHaveLength(2);
    expect(events.find((e) => e.hostId === none.id && e.type === 'host.not_applicable')).toBeDefined();

    await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
    const reverted = await fleet.waitForState(rolloutId, FINAL_REVERT_STATES, 60_000);
    expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
    expect(hostOf(reverted, both.id)).toMatchObject({ state: 'reverted', changed: false });
    expect(hostOf(reverted, libOnly.id)).toMatchObject({ state: 'reverted', changed: false });
    expect(hostOf(reverted, none.id).state).toBe('not_applicable');
    expect(await installed(both)).toEqual({ 'fpsrc-bin': 'ii 1.0-1', libfpsrc1: 'ii 1.0-1' });
    expect(await installed(libOnly)).toEqual({ 'fpsrc-bin': undefined, libfpsrc1: 'ii 1.0-1' });
    expect(await readFile(both.root.path('usr/lib/fpsrc/lib-VERSION'), 'utf8')).toBe('1.0-1\n');
  });

  it('a set whose fpsrc-bin postinst fails on the canary: both members go back, maxFailures 0 halts, the other host is untouched', async () => {
    const hosts = await startHosts('srcfail', { a: OLD, b: OLD });
    const patchId = await fleet.createPatch(sourcePatch('1.0-3', 'fpsrc 1.0-3 (postinst fails on the canary)'));
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, {
        target: { labels: { group: 'srcfail' } },
        waves: [1, '100%'],
        maxFailures: 0,
        autoRevert: 'host',
      }),
    );
    const canaryId = (await fleet.plan(rolloutId)).waves[0]?.hosts[0];
    const canary = hosts.find((h) => h.id === canaryId);
    const other = hosts.find((h) => h.id !== canaryId);
    if (!canary || !other) throw new Error(`plan has no canary among ${hosts.map((h) => h.id).join(', ')}`);
    await canary.root.writeFile(FAIL_MARKER, 'fail\n');

    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    const halted = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 60_000);
    expect(halted.rollout.state, halted.rollout.stateReason ?? '').toBe('halted');
    const run = hostOf(halted, canary.id);
    expect(run, run.reason ?? '').toMatchObject({ state: 'failed', changed: false, errorCode: 'apply_failed' });
    expect(run.reason).toMatch(/fpsrc-bin's postinst failed/);
    expect(run.packages?.map((p) => `${p.name} ${p.from} → ${p.to}`)).toEqual([
      'fpsrc-bin 1.0-1 → 1.0-3',
      'libfpsrc1 1.0-1 → 1.0-3',
    ]);
    // Both members back at 1.0-1, the library too although its own upgrade had gone through.
    expect(await installed(canary)).toEqual({ 'fpsrc-bin': 'ii 1.0-1', libfpsrc1: 'ii 1.0-1' });
    expect(hostOf(halted, other.id)).toMatchObject({ state: 'queued', orderId: null });
    expect(await installed(other)).toEqual({ 'fpsrc-bin': 'ii 1.0-1', libfpsrc1: 'ii 1.0-1' });
  });
});
