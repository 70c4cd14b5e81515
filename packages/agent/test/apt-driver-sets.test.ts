import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PackageChangeInput, PackageChangeSchema } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AptDriver } from '../src/drivers/apt-driver.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import {
  buildDeb,
  createAptRepository,
  createDebTestBed,
  type DebSpec,
  type DebTestBed,
  type DpkgRoot,
  debTools,
  failWhenMarkerScript,
  missingTools,
  readIfExists,
} from './support/deb-fixtures.js';
import { driverContext as context, expectFleetError as failure } from './support/driver-calls.js';

/*
 * Package sets and source changes on real dpkg in throwaway roots. Source `fpsrc` builds two
 * binaries: `fpsrc-bin` (with a conffile) and `libfpsrc1`, which is binNMU'd at 1.0-2 (binary
 * 1.0-2+b1, `Source: fpsrc (1.0-2)`). At 1.0-4, fpsrc-bin depends on a package outside the set.
 */
const conf = (version: string) => `# fpsrc ${version}\nlevel=${version}\n`;
function fpsrcSpecs(): DebSpec[] {
  const bin = (version: string, extra: Partial<DebSpec> = {}): DebSpec => ({
    name: 'fpsrc-bin',
    version,
    source: 'fpsrc',
    files: { '/usr/share/fpsrc/bin-VERSION': `${version}\n` },
    conffiles: { '/etc/fpsrc.conf': conf(version) },
    postinst: failWhenMarkerScript('fpsrc-fail-postinst'),
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
    bin('1.0-4', { depends: 'fpother' }),
    lib('1.0-1', 'fpsrc'),
    lib('1.0-2+b1', 'fpsrc (1.0-2)'),
    lib('1.0-4', 'fpsrc'),
  ];
}

function change(input: Omit<PackageChangeInput, 'kind' | 'manager'>) {
  return PackageChangeSchema.parse({ kind: 'package', manager: 'apt', ...input });
}

describeNeeding([debTools], 'package sets and source changes against real dpkg', () => {
  let bed: DebTestBed;
  let snapshots: string;

  beforeAll(async () => {
    bed = await createDebTestBed(fpsrcSpecs());
    snapshots = await mkdtemp(join(tmpdir(), 'fleetpatch-set-snapshots-'));
  }, 60_000);

  afterAll(async () => {
    await bed?.dispose();
    if (snapshots) await rm(snapshots, { recursive: true, force: true });
  });

  async function hostWith(...seed: Array<[string, string]>): Promise<{ host: DpkgRoot; driver: AptDriver }> {
    const host = await bed.newRoot();
    for (const [name, version] of seed) await host.install(bed.deb(name, version));
    return { host, driver: new AptDriver(host.driverOptions) };
  }

  const oldFpsrc: Array<[string, string]> = [
    ['fpsrc-bin', '1.0-1'],
    ['libfpsrc1', '1.0-1'],
  ];

  async function versions(host: DpkgRoot): Promise<Record<string, string | undefined>> {
    const bin = await host.query('fpsrc-bin');
    const lib = await host.query('libfpsrc1');
    return { bin: bin && `${bin.status} ${bin.version}`, lib: lib && `${lib.status} ${lib.version}` };
  }

  it('a source change moves every installed binary of the source, the binNMU to its +b1, and reverts them together', async () => {
    const { host, driver } = await hostWith(...oldFpsrc, ['fptest', '1.0']);
    const c = change({ source: 'fpsrc', version: '1.0-2' });
    const ctx = context();

    const verdict = await driver.preflight(c, ctx);
    expect(verdict).toMatchObject({ outcome: 'would_apply' });
    expect(verdict.packages).toEqual([
      { name: 'fpsrc-bin', from: '1.0-1', to: '1.0-2' },
      { name: 'libfpsrc1', from: '1.0-1', to: '1.0-2+b1' },
    ]);
    const dir = await mkdtemp(join(snapshots, 'order-'));
    const snap = await driver.snapshot(c, dir, ctx);
    expect(snap.source).toEqual({ name: 'fpsrc', version: '1.0-2' });
    expect(snap.members.map((m) => [m.name, m.target, m.deb?.source])).toEqual([
      ['fpsrc-bin', '1.0-2', 'apt-download'],
      ['libfpsrc1', '1.0-2+b1', 'apt-download'],
    ]);

    await driver.apply(c, ctx, snap);
    await driver.verify(c, ctx, snap);
    expect(await versions(host)).toEqual({ bin: 'ii 1.0-2', lib: 'ii 1.0-2+b1' });
    // Nothing outside the source moved.
    expect(await host.query('fptest')).toEqual({ status: 'ii', version: '1.0' });
    // dpkg.log shows one transaction: both unpacked before either was configured.
    const log = await readFile(host.path('var/log/dpkg.log'), 'utf8');
    const run = log.slice(log.lastIndexOf('startup archives install'));
    expect(run.indexOf('upgrade libfpsrc1')).toBeLessThan(run.indexOf('configure fpsrc-bin'));
    expect(run.indexOf('upgrade fpsrc-bin')).toBeLessThan(run.indexOf('configure libfpsrc1'));
    expect(driver.describeSnapshot(snap, c)).toEqual({
      packages: [
        { name: 'fpsrc-bin', from: '1.0-1', to: '1.0-2', snapshot: 'apt-download' },
        { name: 'libfpsrc1', from: '1.0-1', to: '1.0-2+b1', snapshot: 'apt-download' },
      ],
    });

    await driver.restore(c, snap, dir, ctx);
    expect(await versions(host)).toEqual({ bin: 'ii 1.0-1', lib: 'ii 1.0-1' });
    expect(await host.audit()).toBe('');
  });

  it('a source change only moves the binaries installed here: one of two is a set of one', async () => {
    const { host, driver } = await hostWith(['libfpsrc1', '1.0-1']);
    const verdict = await driver.preflight(change({ source: 'fpsrc', version: '1.0-2' }), context());
    expect(verdict).toMatchObject({
      outcome: 'would_apply',
      packages: [{ name: 'libfpsrc1', from: '1.0-1', to: '1.0-2+b1' }],
    });
    expect(await host.query('fpsrc-bin')).toBeUndefined();
  });

  it('a host with none of the source’s binaries is not_applicable, in preflight and when asked to snapshot', async () => {
    const { driver } = await hostWith(['fptest', '1.0']);
    const c = change({ source: 'fpsrc', version: '1.0-2' });
    expect(await driver.preflight(c, context())).toEqual({
      outcome: 'not_applicable',
      detail: 'no binary package of source fpsrc is installed on this host',
    });
    await failure(driver.snapshot(c, await mkdtemp(join(snapshots, 'order-')), context()), 'snapshot_failed');
  });

  it('a source version apt does not know is refused by preflight, naming the binaries, without apt-get update', async () => {
    const { host, driver } = await hostWith(...oldFpsrc);
    const lists = host.path('var/lib/apt/lists');
    const before = await treeDigest(lists);
    const verdict = await driver.preflight(change({ source: 'fpsrc', version: '9.9-1' }), context());
    expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
    expect(verdict.outcome === 'would_fail' && verdict.detail).toMatch(
      /apt knows no version of fpsrc-bin, libfpsrc1 built from fpsrc 9\.9-1 .*run apt-get update; fleetpatch's preflight does not/,
    );
    expect(await treeDigest(lists)).toBe(before);
  });

  it('preflight never runs apt-get update (D8); the preflight of an apply order may, once', async () => {
    // A version published after the host last read its indexes.
    const repoDir = join(bed.baseDir, 'late-repo');
    const late = await buildDeb({ name: 'fplate', version: '2.0', files: { '/usr/share/fplate': '2\n' } }, bed.baseDir);
    const early = await buildDeb(
      { name: 'fplate', version: '1.0', files: { '/usr/share/fplate': '1\n' } },
      bed.baseDir,
    );
    const repo = await createAptRepository(repoDir, [early]);
    const host = await bed.newRoot('late');
    await writeFile(host.path('etc/apt/sources.list'), `${repo.sourcesLine}\n`);
    expect((await host.run(['apt-get', ...(host.driverOptions.aptOptions ?? []), '-q', 'update'])).code).toBe(0);
    await host.install(early);
    await createAptRepository(repoDir, [early, late]);
    const driver = new AptDriver(host.driverOptions);
    const c = change({ name: 'fplate', version: '2.0' });

    const lists = host.path('var/lib/apt/lists');
    const before = await treeDigest(lists);
    const dry = await driver.preflight(c, context());
    expect(dry).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
    expect(dry.outcome === 'would_fail' && dry.detail).toMatch(/run apt-get update; a preflight does not/);
    expect(await treeDigest(lists)).toBe(before);

    expect(await driver.preflight(c, context({ mayRefreshIndexes: true }))).toMatchObject({ outcome: 'would_apply' });
    expect(await treeDigest(lists)).not.toBe(before);
  });

  it('an explicit set where one postinst fails is rolled back whole: every member at its old version', async () => {
    const { host, driver } = await hostWith(...oldFpsrc);
    const c = change({
      packages: [
        { name: 'libfpsrc1', version: '1.0-2+b1', expectedPriorVersion: '1.0-1' },
        { name: 'fpsrc-bin', version: '1.0-2', expectedPriorVersion: '1.0-1' },
      ],
    });
    const ctx = context();
    expect(await driver.preflight(c, ctx)).toMatchObject({ outcome: 'would_apply' });
    const dir = await mkdtemp(join(snapshots, 'order-'));
    const snap = await driver.snapshot(c, dir, ctx);

    await host.writeFile('fpsrc-fail-postinst', '');
    const err = await failure(driver.apply(c, ctx, snap), 'apply_failed');
    // D3: the failing maintainer script is named, and dpkg's own output travels with the error.
    expect(err.message).toMatch(/^dpkg exited with status 1; fpsrc-bin's postinst failed \(exit status 1\); /);
    expect(err.message).toContain('fpsrc-bin is 1.0-2 "install ok half-configured", not 1.0-2');
    expect(err.message).toContain('--- dpkg output (tail) ---');
    expect(err.message).toContain('failing because fpsrc-fail-postinst exists');
    // The other member went through: a mix that the revert must undo.
    expect((await versions(host)).lib).toBe('ii 1.0-2+b1');

    await rm(host.path('fpsrc-fail-postinst'));
    await driver.restore(c, snap, dir, ctx);
    expect(await versions(host)).toEqual({ bin: 'ii 1.0-1', lib: 'ii 1.0-1' });
    expect(await readFile(host.path('usr/lib/fpsrc/lib-VERSION'), 'utf8')).toBe('1.0-1\n');
    expect(await host.audit()).toBe('');
  });

  it('preflight refuses a set whose install would change a package outside it, naming it', async () => {
    const { host, driver } = await hostWith(...oldFpsrc);
    const verdict = await driver.preflight(change({ source: 'fpsrc', version: '1.0-4' }), context());
    expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
    expect(verdict.outcome === 'would_fail' && verdict.detail).toBe(
      'apt would also change packages outside the set: install fpother 1.0; add them to the set (packages) or fix their dependencies first',
    );
    // With the package in the set it is fine.
    const withIt = await driver.preflight(
      change({
        packages: [
          { name: 'fpsrc-bin', version: '1.0-4' },
          { name: 'libfpsrc1', version: '1.0-4' },
          { name: 'fpother', version: '1.0' },
        ],
      }),
      context(),
    );
    expect(withIt).toMatchObject({ outcome: 'would_apply' });
    expect(await host.query('fpother')).toBeUndefined();
  });

  it('a revert leaves the conffiles as they were: no .dpkg-dist left behind (note 1)', async () => {
    const { host, driver } = await hostWith(...oldFpsrc);
    // The admin's own setting: dpkg keeps it (confold) and puts the package's new default beside it.
    await writeFile(host.path('etc/fpsrc.conf'), 'level=admin\n');
    const c = change({ source: 'fpsrc', version: '1.0-2' });
    const ctx = context();
    const dir = await mkdtemp(join(snapshots, 'order-'));
    const snap = await driver.snapshot(c, dir, ctx);
    await driver.apply(c, ctx, snap);
    expect(await readFile(host.path('etc/fpsrc.conf'), 'utf8')).toBe('level=admin\n');
    expect(await readIfExists(host.path('etc/fpsrc.conf.dpkg-dist'))).toBe(conf('1.0-2'));

    await driver.restore(c, snap, dir, ctx);
    expect(await readFile(host.path('etc/fpsrc.conf'), 'utf8')).toBe('level=admin\n');
    expect((await readdir(host.path('etc'))).filter((f) => f.startsWith('fpsrc.conf'))).toEqual(['fpsrc.conf']);
  });

  it('a leftover that was there before the change (dpkg deletes it on upgrade) is back after the revert', async () => {
    const { host, driver } = await hostWith(...oldFpsrc);
    await writeFile(host.path('etc/fpsrc.conf'), 'level=admin\n');
    await writeFile(host.path('etc/fpsrc.conf.dpkg-old'), 'the admin keeps this\n');
    const c = change({ source: 'fpsrc', version: '1.0-2' });
    const ctx = context();
    const dir = await mkdtemp(join(snapshots, 'order-'));
    const snap = await driver.snapshot(c, dir, ctx);
    expect(snap.members[0]?.conffileLeftovers).toEqual([
      { path: '/etc/fpsrc.conf.dpkg-old', copy: 'conffile-leftover-0', mode: expect.any(Number) },
    ]);
    await driver.apply(c, ctx, snap);
    expect(await readIfExists(host.path('etc/fpsrc.conf.dpkg-old'))).toBeUndefined();
    await driver.restore(c, snap, dir, ctx);
    expect(await readFile(host.path('etc/fpsrc.conf.dpkg-old'), 'utf8')).toBe('the admin keeps this\n');
    expect((await readdir(host.path('etc'))).filter((f) => f.startsWith('fpsrc.conf')).sort()).toEqual([
      'fpsrc.conf',
      'fpsrc.conf.dpkg-old',
    ]);
  });

  it('D1/D3: preflight says would_fail when a prior .deb cannot be captured, and says what would fix it', async () => {
    // Installed from a local file: in no apt source, not in apt's cache.
    const local = await buildDeb({ name: 'fpsrc-bin', version: '0.9-1', source: 'fpsrc' }, bed.baseDir);
    const host = await bed.newRoot();
    await host.install(local);
    const driver = new AptDriver(host.driverOptions);
    const c = change({ source: 'fpsrc', version: '1.0-2' });
    const verdict = await driver.preflight(c, context());
    const repackInstalled = missingTools(['dpkg-repack']).length === 0;
    if (repackInstalled) {
      // dpkg-repack can rebuild it, so the order can go ahead.
      expect(verdict).toMatchObject({ outcome: 'would_apply' });
      return;
    }
    expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'snapshot_failed' });
    const detail = verdict.outcome === 'would_fail' ? verdict.detail : '';
    expect(detail).toContain('fpsrc-bin 0.9-1 (apt-cache: no fpsrc-bin_0.9-1_all.deb; ');
    expect(detail).toContain('apt-get download: no configured source has fpsrc-bin 0.9-1; dpkg-repack: not installed)');
    expect(detail).toMatch(/install dpkg-repack on the host .* or set revertable: false/);

    // The snapshot of an order that goes ahead anyway says the same.
    const err = await failure(
      driver.snapshot(c, await mkdtemp(join(snapshots, 'order-')), context()),
      'snapshot_failed',
    );
    expect(err.message).toMatch(/^no verifiable \.deb of fpsrc-bin 0\.9-1 to go back to; tried: apt-cache: no /);
    expect(err.message).toMatch(/dpkg-repack: not installed\. To fix: install dpkg-repack .* revertable: false/);

    // Marked not revertable, it is allowed, and says it keeps no way back.
    const oneWay = change({ source: 'fpsrc', version: '1.0-2', revertable: false });
    expect(await driver.preflight(oneWay, context())).toMatchObject({ outcome: 'would_apply' });
    const snap = await driver.snapshot(oneWay, await mkdtemp(join(snapshots, 'order-')), context());
    expect(driver.describeSnapshot(snap, oneWay)?.packages).toEqual([
      { name: 'fpsrc-bin', from: '0.9-1', to: '1.0-2', snapshot: 'none' },
    ]);
  });

  it('the agent policy judges every member of a set and of a resolved source set', async () => {
    const { driver } = await hostWith(...oldFpsrc);
    const policy = (allowedPackages: string[], allowedSourcePackages: string[] = []) =>
      new AgentPolicy(
        { file: { allowedRoots: ['/etc'] }, health: {}, apt: { allowedPackages, allowedSourcePackages } },
        { packageFacts: driver.packageFacts },
      );
    const signal = new AbortController().signal;
    const source = change({ source: 'fpsrc', version: '1.0-2' });
    const set = change({
      packages: [
        { name: 'fpsrc-bin', version: '1.0-2' },
        { name: 'libfpsrc1', version: '1.0-2+b1' },
      ],
    });
    for (const c of [source, set]) {
      expect(await policy(['fpsrc-bin']).checkPackageChange(c, signal)).toEqual({
        ok: false,
        code: 'policy_denied',
        reason: 'package libfpsrc1 is not in apt.allowedPackages',
      });
      expect(await policy(['fpsrc-bin', 'libfpsrc1']).checkPackageChange(c, signal)).toEqual({ ok: true });
      expect(await policy([], ['fpsrc']).checkPackageChange(c, signal)).toEqual({ ok: true });
    }
    // The driver's own allow-list too.
    const narrow = new AptDriver({ ...(await bed.newRoot()).driverOptions, allowedPackages: ['fpsrc-bin'] });
    expect(await narrow.preflight(set, context())).toMatchObject({
      outcome: 'would_fail',
      code: 'policy_denied',
      detail: "package libfpsrc1 is not in this agent's allowed packages",
    });
  });
});

/** A digest of every file name and content under `dir`: equal before and after means nothing was written. */
async function treeDigest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  for (const entry of (await readdir(dir, { recursive: true, withFileTypes: true })).sort((a, b) =>
    join(a.parentPath, a.name).localeCompare(join(b.parentPath, b.name)),
  )) {
    const path = join(entry.parentPath, entry.name);
    hash.update(`${path}\n`);
    if (entry.isFile()) hash.update(await readFile(path));
  }
  return hash.digest('hex');
}
