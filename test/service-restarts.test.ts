/**
 * Services after a package change, end to end: a real coordinator, a real agent process on a
 * throwaway dpkg root, and a real systemd (PID 1 of namespaces of its own, test/support/
 * namespaced-systemd.ts) running two services that map a library the package ships. The patch
 * restarts one of them: the status (API and CLI) says it was restarted, that the other still runs
 * the replaced library, and that the package's postinst asked for a reboot; the revert restarts it
 * again onto the old library.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostView, PatchSpecInput } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebSpec,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FINAL_APPLY_STATES, FINAL_REVERT_STATES, FleetHarness, hostOf } from './support/fleet-harness.js';
import { NamespacedSystemd, namespacedSystemdSupport } from './support/namespaced-systemd.js';
import { describeNeeding, requirement, root } from './support/requirements.js';
import { diskTmpdir } from './support/scratch-tmpdir.js';

const LIBRARY = '/usr/lib/fplib/libfp.so.1';

/** fplib 1.0 and 2.0 ship the "library"; 2.0's postinst asks for a reboot, as a libc or kernel would. */
const FPLIB: DebSpec[] = [
  { name: 'fplib', version: '1.0', files: { [LIBRARY]: 'fplib 1.0\n' } },
  {
    name: 'fplib',
    version: '2.0',
    files: { [LIBRARY]: 'fplib 2.0\n' },
    postinst: [
      'mkdir -p "$DPKG_ROOT/var/run"',
      'touch "$DPKG_ROOT/var/run/reboot-required"',
      'echo fplib >> "$DPKG_ROOT/var/run/reboot-required.pkgs"',
    ].join('\n'),
  },
];

/** A service that maps the library read-only, as the dynamic loader would, and sleeps. */
const MAPPER = `import mmap, sys, time
f = open(sys.argv[1], 'rb')
m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
time.sleep(1e9)
`;

describeNeeding(
  [debTools, root, requirement('systemd in namespaces', namespacedSystemdSupport())],
  'services restarted after a package change, against a real systemd',
  () => {
    let work: string;
    let bed: DebTestBed;
    let fleet: FleetHarness;
    let systemd: NamespacedSystemd;
    let host: DpkgRoot;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'fleetpatch-services-e2e-'));
      [bed, fleet] = await Promise.all([
        createDebTestBed(FPLIB, { parent: diskTmpdir() }),
        FleetHarness.start(join(work, 'coordinator')),
      ]);
      host = await bed.newRoot('svc-1');
      await host.install(bed.deb('fplib', '1.0'));
      const mapper = join(work, 'mapper.py');
      await writeFile(mapper, MAPPER);
      const unit = `[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/python3 ${mapper} ${host.path(LIBRARY.slice(1))}\n`;
      systemd = await NamespacedSystemd.boot({ 'fp-app.service': unit, 'fp-other.service': unit });

      const dir = join(work, 'svc-1');
      await mkdir(dir, { recursive: true });
      const configFile = join(dir, 'agent.json');
      const config = {
        apt: { ...host.driverOptions, allowedPackages: ['fplib'] },
        services: { allowedUnits: ['fp-app.service'], systemctl: systemd.systemctlArgv, needrestart: 'off' },
      };
      await writeFile(configFile, JSON.stringify(config));
      fleet.spawnAgent({
        id: 'svc-1',
        joinToken: await fleet.register('svc-1', { app: 'svc' }),
        dataDir: join(dir, 'agent-data'),
        rootDir: host.root,
        configFile,
        labels: { app: 'svc' },
      });
      await fleet.waitOnline(['svc-1']);
    }, 120_000);

    afterAll(async () => {
      await fleet?.stop();
      await systemd?.stop();
      await bed?.dispose();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('restarts the listed unit, reports the one left on the old library and the reboot, in the API and the CLI; the revert restarts it again', async () => {
      const appBefore = systemd.mainPid('fp-app.service');
      const otherBefore = systemd.mainPid('fp-other.service');
      const patch: PatchSpecInput = samplePackagePatch({ title: 'fplib 2.0', name: 'fplib', version: '2.0' });
      if (patch.change.kind !== 'package') throw new Error('a package patch');
      patch.change.restart = { afterApply: ['fp-app.service'], afterRevert: ['fp-app.service'] };
      const patchId = await fleet.createPatch(patch);
      const rolloutId = await fleet.createRollout(sampleRollout(patchId, { target: { hostIds: ['svc-1'] } }));
      await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
      const done = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 90_000);
      const run: HostView = hostOf(done, 'svc-1');
      expect(done.rollout.state, run.reason ?? '').toBe('succeeded');
      expect(await host.query('fplib')).toEqual({ status: 'ii', version: '2.0' });

      // Restarted onto the new library: a new main process; the other service is untouched and stale.
      expect(systemd.mainPid('fp-app.service')).not.toBe(appBefore);
      expect(systemd.mainPid('fp-other.service')).toBe(otherBefore);
      const report = run.afterChange;
      expect(report?.restarts).toEqual([
        { unit: 'fp-app.service', when: 'apply', ok: true, detail: '', ms: expect.any(Number) },
      ]);
      expect(report?.staleUnits).toContain('fp-other.service');
      expect(report?.staleUnits).not.toContain('fp-app.service');
      expect(report?.staleProcesses.find((p) => p.unit === 'fp-other.service')?.files).toEqual([
        host.path(LIBRARY.slice(1)),
      ]);
      expect(report?.reboot).toEqual({ required: true, causedByThisChange: true, packages: ['fplib'] });

      const cli = await runCli(fleet.coordinator.url, ['rollout', 'status', rolloutId], { token: ADMIN_TOKEN });
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toMatch(
        /\n {2}svc-1 restarted fp-app\.service; still on old libraries: [^;]*fp-other\.service[^;]*; reboot required \(by this patch\)\n/,
      );

      await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
      const reverted = await fleet.waitForState(rolloutId, FINAL_REVERT_STATES, 90_000);
      expect(reverted.rollout.state).toBe('reverted');
      expect(await host.query('fplib')).toEqual({ status: 'ii', version: '1.0' });
      expect(hostOf(reverted, 'svc-1').afterChange?.restarts).toEqual([
        { unit: 'fp-app.service', when: 'revert', ok: true, detail: '', ms: expect.any(Number) },
      ]);
    });
  },
);
