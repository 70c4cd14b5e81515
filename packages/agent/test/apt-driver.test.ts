import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FleetError, type PackageChange, PackageChangeSchema } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeNeeding, itNeeding, root } from '../../../test/support/requirements.js';
import { AptDriver, type PackageSnapshot } from '../src/drivers/apt-driver.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import {
  buildDeb,
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
  readIfExists,
  waitFor,
} from './support/deb-fixtures.js';
import { driverContext as context, expectFleetError } from './support/driver-calls.js';

function change(input: Omit<Partial<PackageChange>, 'kind' | 'manager'> & { name: string; version: string }) {
  return PackageChangeSchema.parse({ kind: 'package', manager: 'apt', ...input });
}

describeNeeding([debTools], 'AptDriver against real dpkg in a throwaway root', () => {
  let bed: DebTestBed;
  let snapshots: string;

  beforeAll(async () => {
    bed = await createDebTestBed();
    snapshots = await mkdtemp(join(tmpdir(), 'fleetpatch-apt-snapshots-'));
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

  async function snapshotDir(): Promise<string> {
    const dir = await mkdtemp(join(snapshots, 'order-'));
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async function expectInstalled(host: DpkgRoot, name: string, version: string): Promise<void> {
    expect(await host.query(name)).toEqual({ status: 'ii', version });
    expect(await host.audit()).toBe('');
  }

  it('upgrades 1.0 → 2.0 with a verified snapshot, then reverts to 1.0', async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    const c = change({ name: 'fptest', version: '2.0', expectedPriorVersion: '1.0' });
    const ctx = context();

    expect(await driver.preflight(c, ctx)).toMatchObject({ outcome: 'would_apply' });
    const dir = await snapshotDir();
    const snap = await driver.snapshot(c, dir, ctx);
    expect(snap.members).toHaveLength(1);
    expect(snap.members[0]?.prior).toEqual({ installed: true, version: '1.0', architecture: 'all' });
    expect(snap.members[0]?.deb).toMatchObject({ file: 'fptest_1.0_all.deb', source: 'apt-download' });
    const stored = await readFile(join(dir, 'fptest_1.0_all.deb'));
    expect(stored.equals(await readFile(bed.deb('fptest', '1.0')))).toBe(true);

    await driver.apply(c, ctx);
    await driver.verify(c, ctx);
    await expectInstalled(host, 'fptest', '2.0');
    expect(await readFile(host.path('usr/share/fptest/VERSION'), 'utf8')).toBe('2.0\n');

    await driver.restore(c, snap, dir, ctx);
    await expectInstalled(host, 'fptest', '1.0');
    expect(await readFile(host.path('usr/share/fptest/VERSION'), 'utf8')).toBe('1.0\n');
    await expectFleetError(driver.verify(c, ctx), 'verify_failed');
  });

  it('installs a package that was not installed, and revert removes it again', async () => {
    const { host, driver } = await hostWith();
    const c = change({ name: 'fpnew', version: '1.0', expectedPriorVersion: 'absent' });
    const ctx = context();
    expect(await driver.preflight(c, ctx)).toMatchObject({ outcome: 'would_apply' });
    const dir = await snapshotDir();
    const snap = await driver.snapshot(c, dir, ctx);
    expect(snap.members).toMatchObject([{ prior: { installed: false, configFiles: false }, deb: null }]);

    await driver.apply(c, ctx);
    await expectInstalled(host, 'fpnew', '1.0');
    await driver.restore(c, snap, dir, ctx);
    expect(await host.query('fpnew')).toBeUndefined();
    expect(await host.audit()).toBe('');
    expect(await readIfExists(host.path('etc/fpnew.conf'))).toBeUndefined();
  });

  it('a failing post-install script fails the apply, and restore brings 1.0 back', async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    const c = change({ name: 'fptest', version: '2.0' });
    const ctx = context();
    const dir = await snapshotDir();
    const snap = await driver.snapshot(c, dir, ctx);

    await host.writeFile('fptest-fail-postinst', '');
    const err = await expectFleetError(driver.apply(c, ctx), 'apply_failed');
    expect(err.details).toMatchObject({ states: [{ version: '2.0', clean: false }] });
    expect(await host.query('fptest')).toEqual({ status: 'iF', version: '2.0' });

    // 1.0's postinst reads the same marker; the failure belongs to 2.0 only.
    await rm(host.path('fptest-fail-postinst'));
    await driver.restore(c, snap, dir, ctx);
    await expectInstalled(host, 'fptest', '1.0');
  });

  it("keeps the admin's edited config file through upgrade and revert", async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    const edited = '# edited by the admin\nsetting=local\n';
    await host.writeFile('etc/fptest/fptest.conf', edited);
    const c = change({ name: 'fptest', version: '2.0' });
    const ctx = context();
    const dir = await snapshotDir();
    const snap = await driver.snapshot(c, dir, ctx);

    await driver.apply(c, ctx);
    await expectInstalled(host, 'fptest', '2.0');
    expect(await readFile(host.path('etc/fptest/fptest.conf'), 'utf8')).toBe(edited);

    await driver.restore(c, snap, dir, ctx);
    await expectInstalled(host, 'fptest', '1.0');
    expect(await readFile(host.path('etc/fptest/fptest.conf'), 'utf8')).toBe(edited);
  });

  it('recovers the old version after dpkg is SIGKILLed mid-install', async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    const c = change({ name: 'fptest', version: '2.5' });
    const ctx = context();
    const dir = await snapshotDir();
    const snap = await driver.snapshot(c, dir, ctx);

    const applying = driver.apply(c, ctx).then(
      () => undefined,
      (e: unknown) => e,
    );
    const pidText = await waitFor(() => readIfExists(host.path('started-fptest')), 'the 2.5 preinst to start');
    const pid = Number(pidText.trim());
    expect((await readFile(`/proc/${pid}/comm`, 'utf8')).trim()).toBe('dpkg');
    process.kill(pid, 'SIGKILL');

    const err = await applying;
    expect(err).toBeInstanceOf(FleetError);
    expect((err as FleetError).code).toBe('apply_failed');
    expect(await host.audit()).not.toBe('');

    await driver.restore(c, snap, dir, ctx);
    await expectInstalled(host, 'fptest', '1.0');
    // Restoring again is a no-op, not a loop.
    await driver.restore(c, snap, dir, ctx);
    await driver.cleanup(c, ctx);
    await expectInstalled(host, 'fptest', '1.0');
  });

  it('cleanup finishes an interrupted dpkg run', async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    await host.writeFile('fptest-fail-postinst', '');
    await expect(host.install(bed.deb('fptest', '2.0'))).rejects.toThrow(/dpkg --install/);
    await rm(host.path('fptest-fail-postinst'));
    expect(await host.query('fptest')).toEqual({ status: 'iF', version: '2.0' });

    await driver.cleanup(change({ name: 'fptest', version: '2.0' }), context());
    await expectInstalled(host, 'fptest', '2.0');
  });

  describe('preflight', () => {
    it('refuses when the installed version drifted from expectedPriorVersion', async () => {
      const { driver } = await hostWith(['fptest', '1.0']);
      const verdict = await driver.preflight(
        change({ name: 'fptest', version: '2.0', expectedPriorVersion: '0.9' }),
        context(),
      );
      expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
      expect(verdict.detail).toMatch(/expected fptest 0\.9, found 1\.0/);

      const absent = await driver.preflight(
        change({ name: 'fptest', version: '2.0', expectedPriorVersion: 'absent' }),
        context(),
      );
      expect(absent).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
    });

    it("answers a dry run blocked, naming the lock's holder, within the dry run's lock budget (not its own 60 s)", async () => {
      const { host } = await hostWith(['fptest', '1.0']);
      const driver = new AptDriver({ ...host.driverOptions, lockTimeoutMs: 60_000 });
      const holder = host.startInstall(bed.deb('fplock', '1.0'));
      const exited = new Promise<number | null>((resolve) => holder.once('exit', resolve));
      try {
        await waitFor(() => readIfExists(host.path('started-fplock')), 'fplock preinst to hold the lock');
        const started = Date.now();
        const verdict = await driver.preflight(change({ name: 'fptest', version: '2.0' }), {
          ...context(),
          lockWaitMs: 1_000,
        });
        // Bounded by the dry run's budget: far below the driver's 60 s (the margin is for a loaded machine).
        expect(Date.now() - started).toBeLessThan(30_000);
        expect(verdict).toMatchObject({ outcome: 'blocked' });
        expect(verdict.detail).toMatch(/^dpkg lock not free within 1000 ms: .*held by process \d+ \(dpkg\)/s);
      } finally {
        await host.writeFile('release-fplock', '');
      }
      expect(await exited).toBe(0);
    });

    it('is blocked while another dpkg holds the lock', async () => {
      const { host, driver } = await hostWith(['fptest', '1.0']);
      const holder = host.startInstall(bed.deb('fplock', '1.0'));
      const exited = new Promise<number | null>((resolve) => holder.once('exit', resolve));
      try {
        await waitFor(() => readIfExists(host.path('started-fplock')), 'fplock preinst to hold the lock');
        const verdict = await driver.preflight(change({ name: 'fptest', version: '2.0' }), context());
        expect(verdict).toMatchObject({ outcome: 'blocked' });
        expect(verdict.detail).toMatch(/lock/);
        await expectFleetError(driver.apply(change({ name: 'fptest', version: '2.0' }), context()), 'blocked');
      } finally {
        await host.writeFile('release-fplock', '');
      }
      expect(await exited).toBe(0);
      // The lock file is still there and works: nothing deleted it.
      expect(await driver.preflight(change({ name: 'fptest', version: '2.0' }), context())).toMatchObject({
        outcome: 'would_apply',
      });
      await expectInstalled(host, 'fptest', '1.0');
    });

    it('says already_applied when the target version is installed', async () => {
      const { driver } = await hostWith(['fptest', '2.0']);
      const verdict = await driver.preflight(
        change({ name: 'fptest', version: '2.0', expectedPriorVersion: '1.0' }),
        context(),
      );
      expect(verdict).toMatchObject({ outcome: 'already_applied' });
    });

    it('refuses a version whose dependency cannot be satisfied', async () => {
      const { host, driver } = await hostWith(['fptest', '1.0']);
      const verdict = await driver.preflight(change({ name: 'fptest', version: '4.0' }), context());
      expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
      expect(verdict.detail).toMatch(/fp-missing/);
      await expectInstalled(host, 'fptest', '1.0');
    });

    it('refuses a version that would remove another package', async () => {
      const { driver } = await hostWith(['fptest', '1.0'], ['fpother', '1.0']);
      const verdict = await driver.preflight(change({ name: 'fptest', version: '5.0' }), context());
      expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
      expect(verdict.detail).toMatch(/outside the set: remove fpother 1\.0/);
    });

    it('refuses a version the repository does not have', async () => {
      const { driver } = await hostWith(['fptest', '1.0']);
      const verdict = await driver.preflight(change({ name: 'fptest', version: '9.9' }), context());
      expect(verdict).toMatchObject({ outcome: 'would_fail', code: 'precondition_failed' });
      expect(verdict.detail).toMatch(/9\.9/);
    });

    it('denies packages outside the allow-list, in preflight and apply', async () => {
      const host = await bed.newRoot();
      const driver = new AptDriver({ ...host.driverOptions, allowedPackages: ['fptest'] });
      const c = change({ name: 'fpother', version: '1.0' });
      expect(await driver.preflight(c, context())).toMatchObject({ outcome: 'would_fail', code: 'policy_denied' });
      await expectFleetError(driver.apply(c, context()), 'policy_denied');
      // Names and versions are re-checked even when the schema was bypassed.
      const forged = { ...change({ name: 'fptest', version: '1.0' }), version: '--admindir=/' };
      expect(await driver.preflight(forged, context())).toMatchObject({ code: 'policy_denied' });
      expect(await host.query('fpother')).toBeUndefined();
    });
  });

  it('gives the agent policy what it needs to refuse a downgrade (installed version, dpkg ordering, source package)', async () => {
    const { host, driver } = await hostWith(['fptest', '2.0']);
    const policy = (allowDowngrade: boolean) =>
      new AgentPolicy(
        { file: { allowedRoots: ['/etc'] }, health: {}, apt: { allowedSourcePackages: ['fptest'], allowDowngrade } },
        { packageFacts: driver.packageFacts },
      );
    const order = (version: string) => ({ change: change({ name: 'fptest', version }) });
    const refused = await policy(false).checkOrder(order('1.0'));
    expect(refused).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(refused.ok === false && refused.reason).toContain('apt.allowDowngrade');
    expect(await policy(true).checkOrder(order('1.0'))).toEqual({ ok: true });
    // Allowed by its source package (the fixture's own name, from the apt indexes).
    expect(await policy(false).checkOrder(order('2.0'))).toEqual({ ok: true });
    await expectInstalled(host, 'fptest', '2.0');
  });

  it('stops before dpkg runs when the order is cancelled', async () => {
    const { host, driver } = await hostWith(['fptest', '1.0']);
    const controller = new AbortController();
    controller.abort();
    const ctx = { ...context(), signal: controller.signal };
    await expectFleetError(driver.apply(change({ name: 'fptest', version: '2.0' }), ctx), 'cancelled');
    await expectInstalled(host, 'fptest', '1.0');
  });

  itNeeding([root], 'refuses a throwaway root with chrootless scripts and no privilege drop when run as root', () => {
    expect(() => new AptDriver({ root: join(bed.baseDir, 'x'), dpkgOptions: ['--force-script-chrootless'] })).toThrow(
      /real \//,
    );
  });

  it("leaves this machine's own dpkg database alone", async () => {
    const query = (...names: string[]) =>
      new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) => {
        execFile('dpkg-query', ['-W', ...names], { env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) =>
          resolve({ code: err?.code ?? 0, stdout, stderr }),
        );
      });
    // The query really reads this machine's database: dpkg itself is in it.
    expect(await query('dpkg')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^dpkg\t\S+\n$/) });
    // And it knows none of the test packages: not installed, not even remembered as removed.
    const names = ['fptest', 'fpnew', 'fpother', 'fplock'];
    expect(await query(...names)).toEqual({
      code: 1,
      stdout: '',
      stderr: names.map((name) => `dpkg-query: no packages found matching ${name}\n`).join(''),
    });
  });

  describe('snapshot', () => {
    it('fails without a verifiable prior .deb, unless the change is not revertable', async () => {
      const host = await bed.newRoot();
      // A local build of 1.0 that the repository does not carry (different contents, same version).
      const localDir = join(bed.baseDir, 'local');
      await mkdir(localDir, { recursive: true });
      const local = await buildDeb(
        { name: 'fptest', version: '1.0', files: { '/usr/share/fptest/VERSION': 'local build\n' } },
        localDir,
      );
      await host.install(local);
      const driver = new AptDriver(host.driverOptions);

      const err = await expectFleetError(
        driver.snapshot(change({ name: 'fptest', version: '2.0' }), await snapshotDir(), context()),
        'snapshot_failed',
      );
      expect(JSON.stringify(err.details)).toMatch(/md5sums differ/);

      const unrevertable: PackageSnapshot = await driver.snapshot(
        change({ name: 'fptest', version: '2.0', revertable: false }),
        await snapshotDir(),
        context(),
      );
      expect(unrevertable.members).toMatchObject([{ prior: { installed: true, version: '1.0' }, deb: null }]);
    });

    it('restore refuses a snapshot .deb whose sha256 changed', async () => {
      const { host, driver } = await hostWith(['fptest', '1.0']);
      const c = change({ name: 'fptest', version: '2.0' });
      const dir = await snapshotDir();
      const snap = await driver.snapshot(c, dir, context());
      await driver.apply(c, context());
      const tampered = {
        ...snap,
        members: snap.members.map((m) => ({ ...m, deb: m.deb ? { ...m.deb, sha256: '0'.repeat(64) } : null })),
      };
      await expectFleetError(driver.restore(c, tampered, dir, context()), 'revert_failed');
      await expectInstalled(host, 'fptest', '2.0');
    });
  });
});
