/**
 * The production path: a real agent running as root drives apt and dpkg against `/`, with the
 * driver's defaults (no dpkg root, no command prefix, no test options), and a real coordinator rolls
 * a package change out to it and back. `/` here is a throwaway Debian 12 system made with
 * `debootstrap --variant=minbase` (cached between runs, see test/support/debian-chroot.ts) and
 * entered with `chroot`; its apt repository is served over HTTP on 127.0.0.1, the coordinator
 * listens on 127.0.0.1, and both are reached from inside because a chroot shares the network.
 * Nothing here touches this machine's own dpkg database or `/`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDeb, createAptRepository, type DebSpec } from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { DebianChroot, debianChrootAvailable, ensureBaseTarball, SUITE, VARIANT } from './support/debian-chroot.js';
import { FINAL_APPLY_STATES, FINAL_REVERT_STATES, FleetHarness, hostOf } from './support/fleet-harness.js';
import { type StaticHttpServer, serveDirectory } from './support/static-http-server.js';

const chrootHere = await debianChrootAvailable();
if (!chrootHere.available) console.warn(`production-path chroot e2e: skipped — ${chrootHere.reason}`);

const HOST = 'chroot-1';
/** Where the postinst of every fptest version appends a line: who configured it, and at which dpkg root. */
const POSTINST_LOG = '/var/lib/fptest/postinst.log';

function fptest(version: string): DebSpec {
  return {
    name: 'fptest',
    version,
    files: { '/usr/share/fptest/VERSION': `${version}\n` },
    conffiles: { '/etc/fptest/fptest.conf': `# shipped by fptest ${version}\nsetting=default\n` },
    postinst: [
      'mkdir -p /var/lib/fptest',
      `echo "fptest ${version} configured by uid $(id -u), DPKG_ROOT='\${DPKG_ROOT:-}'" >> ${POSTINST_LOG}`,
    ].join('\n'),
  };
}

/**
 * Source package fpsrc: fpsrc-bin and libfpsrc1; at 1.0-2 the library is a binNMU (`1.0-2+b1`,
 * `Source: fpsrc (1.0-2)`), as a security update of a library often is.
 */
function fpsrc(name: 'fpsrc-bin' | 'libfpsrc1', version: string, source = 'fpsrc'): DebSpec {
  return { name, version, source, files: { [`/usr/share/${name}/VERSION`]: `${version}\n` } };
}

const postinstLine = (version: string) => `fptest ${version} configured by uid 0, DPKG_ROOT=''`;

/** The agent's whole config: apt on, fptest allowed, and nothing else of apt's set — production defaults. */
const AGENT_CONFIG = {
  apt: { allowedPackages: ['fptest'], allowedSourcePackages: ['fpsrc'] },
  health: { allowedFileRoots: ['/etc', '/opt', '/usr/local/etc', '/usr/share/fptest'] },
};

describe.skipIf(!chrootHere.available)(
  `a root agent in a Debian ${SUITE} chroot${chrootHere.available ? '' : ` (skipped: ${chrootHere.reason})`}`,
  () => {
    let work: string | undefined;
    let chroot: DebianChroot | undefined;
    let repo: StaticHttpServer | undefined;
    let fleet: FleetHarness | undefined;
    let repoDir: string;
    let debs: { v10: string; v11: string };
    let fpsrcDebs: { old: string[]; fixed: string[] };

    beforeAll(
      async () => {
        if (!chrootHere.available) return;
        const base = await ensureBaseTarball(chrootHere.tarball, chrootHere.mirror);
        if (base.built) console.info(`debootstrap ${VARIANT} ${SUITE}: built and cached in ${base.ms} ms`);
        const extractStarted = Date.now();
        chroot = await DebianChroot.extract(chrootHere.tarball);
        console.info(`chroot extracted from ${chrootHere.tarball} in ${Date.now() - extractStarted} ms`);

        work = await mkdtemp(join(tmpdir(), 'fleetpatch-chroot-e2e-'));
        const debDir = join(work, 'debs');
        repoDir = join(work, 'repo');
        await mkdir(debDir);
        debs = { v10: await buildDeb(fptest('1.0'), debDir), v11: await buildDeb(fptest('1.1'), debDir) };
        fpsrcDebs = {
          old: [
            await buildDeb(fpsrc('fpsrc-bin', '1.0-1'), debDir),
            await buildDeb(fpsrc('libfpsrc1', '1.0-1'), debDir),
          ],
          fixed: [
            await buildDeb(fpsrc('fpsrc-bin', '1.0-2'), debDir),
            await buildDeb(fpsrc('libfpsrc1', '1.0-2+b1', 'fpsrc (1.0-2)'), debDir),
          ],
        };
        // The repository starts with 1.0 only: 1.1 is published later, as a real update would be.
        await createAptRepository(repoDir, [debs.v10, ...fpsrcDebs.old]);
        [repo, fleet] = await Promise.all([serveDirectory(repoDir), FleetHarness.start(join(work, 'coordinator'))]);

        // This repository only: apt never reaches for the Debian mirror during the test.
        await chroot.writeFile('/etc/apt/sources.list', `deb [trusted=yes] ${repo.url} ./\n`);
        await chroot.runChecked(['apt-get', '-q', 'update']);
        await chroot.runChecked(['apt-get', '-q', '-y', 'install', 'fptest=1.0', 'fpsrc-bin=1.0-1', 'libfpsrc1=1.0-1']);
        // An admin's edit of the conffile: kept by the upgrade and by the revert.
        await chroot.writeFile('/etc/fptest/fptest.conf', 'setting=tuned-by-the-admin\n');
        await chroot.writeFile('/etc/fleetpatch-agent/agent.json', JSON.stringify(AGENT_CONFIG));
      },
      // Only building the base system (once, then cached) may take minutes.
      chrootHere.available && !chrootHere.cached ? 30 * 60_000 : 120_000,
    );

    afterAll(async () => {
      // Each step runs even when the one before failed; the agent is stopped before its chroot is deleted.
      const failures: unknown[] = [];
      const steps = [
        () => fleet?.stop(),
        () => repo?.close(),
        () => chroot?.dispose(),
        () => (work ? rm(work, { recursive: true, force: true }) : undefined),
      ];
      for (const step of steps) {
        try {
          await step();
        } catch (err) {
          failures.push(err);
        }
      }
      if (failures.length > 0) throw new AggregateError(failures, 'chroot e2e cleanup failed');
    });

    async function dpkgQuery(): Promise<string> {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
      return chroot!.runChecked(['dpkg-query', '-W', '-f=${db:Status-Abbrev}${Version}', 'fptest']);
    }

    async function expectInstalled(version: string): Promise<void> {
      expect(await dpkgQuery(), 'dpkg-query -W fptest').toBe(`ii ${version}`);
      expect(await chroot!.runChecked(['dpkg', '--audit']), 'dpkg --audit').toBe('');
      expect(await chroot!.readFile('/usr/share/fptest/VERSION')).toBe(`${version}\n`);
      expect(await chroot!.readFile('/etc/fptest/fptest.conf')).toBe('setting=tuned-by-the-admin\n');
    }

    it('rolls fptest 1.0 → 1.1 out through a real coordinator, then reverts it to 1.0', async () => {
      const started = Date.now();
      await expectInstalled('1.0');
      expect(await chroot!.readFile(POSTINST_LOG)).toBe(`${postinstLine('1.0')}\n`);

      // 1.1 is published now; the agent's preflight has to run `apt-get update` itself to see it.
      await createAptRepository(repoDir, [debs.v10, debs.v11]);
      const token = await fleet!.register(HOST, { env: 'chroot' });
      fleet!.spawnAgent({
        id: HOST,
        joinToken: token,
        // Paths as seen inside the chroot, where the agent runs: the production defaults.
        dataDir: '/var/lib/fleetpatch-agent',
        rootDir: '/',
        configFile: '/etc/fleetpatch-agent/agent.json',
        wrap: chroot!.enter,
        labels: { env: 'chroot' },
      });
      await fleet!.waitOnline([HOST], 60_000);

      const patchId = await fleet!.createPatch(
        samplePackagePatch({
          title: 'fptest 1.1 on a real root',
          name: 'fptest',
          version: '1.1',
          expectedPriorVersion: '1.0',
          health: {
            checks: [{ kind: 'file', name: 'fptest ships its files', path: '/usr/share/fptest/VERSION' }],
            intervalSeconds: 0.1,
            minHealthySeconds: 0,
            healthyDeadlineSeconds: 30,
          },
        }),
      );
      const rolloutId = await fleet!.startRollout(
        sampleRollout(patchId, { target: { hostIds: [HOST] }, bakeSeconds: 0 }),
      );
      const done = await fleet!.waitForState(rolloutId, FINAL_APPLY_STATES, 120_000);
      expect(done.rollout.state, `${done.rollout.stateReason ?? ''}\n${fleet!.agentLogs().join('\n')}`).toBe(
        'succeeded',
      );
      expect(hostOf(done, HOST)).toMatchObject({ state: 'healthy', changed: true });
      await expectInstalled('1.1');
      // The agent fetched the new index and the .deb over HTTP, as apt on a server does.
      expect(repo!.requests).toContain('/fptest_1.1_all.deb');

      await fleet!.api.post(`/v1/rollouts/${rolloutId}/revert`);
      const reverted = await fleet!.waitForState(rolloutId, FINAL_REVERT_STATES, 120_000);
      expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
      expect(hostOf(reverted, HOST)).toMatchObject({ state: 'reverted', changed: false });
      await expectInstalled('1.0');

      // Every maintainer script ran as root with dpkg's root at `/` (no $DPKG_ROOT): the real
      // thing, not the chrootless fakeroot path of the other package tests.
      expect((await chroot!.readFile(POSTINST_LOG)).trimEnd().split('\n')).toEqual([
        postinstLine('1.0'),
        postinstLine('1.1'),
        postinstLine('1.0'),
      ]);
      // And none of it happened on this machine.
      expect(existsSync(POSTINST_LOG), `${POSTINST_LOG} on this machine`).toBe(false);
      const hostDpkg = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile('dpkg-query', ['-W', 'fptest'], (err, _stdout, stderr) =>
          resolve({ code: typeof err?.code === 'number' ? err.code : 0, stderr }),
        ),
      );
      expect(hostDpkg, "this machine's dpkg database").toEqual({
        code: 1,
        stderr: expect.stringMatching(/no packages found matching fptest/),
      });
      console.info(`production-path rollout and revert in the chroot: ${Date.now() - started} ms`);
    });

    async function fpsrcInstalled(): Promise<string> {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
      const format = '${Package} ${db:Status-Abbrev}${Version}\n';
      return chroot!.runChecked(['dpkg-query', '-W', `-f=${format}`, 'fpsrc-bin', 'libfpsrc1']);
    }

    it("rolls a source change (fpsrc 1.0-2, its library binNMU'd) out as one set and reverts it as one", async () => {
      expect(await fpsrcInstalled()).toBe('fpsrc-bin ii 1.0-1\nlibfpsrc1 ii 1.0-1\n');
      // The fix is published and the host's apt has read it (the advisory's day: apt-get update ran).
      await createAptRepository(repoDir, [debs.v10, debs.v11, ...fpsrcDebs.old, ...fpsrcDebs.fixed]);
      await chroot!.runChecked(['apt-get', '-q', 'update']);
      // The root agent the test above started in the chroot, still running.
      await fleet!.waitOnline([HOST], 60_000);

      const patchId = await fleet!.createPatch({
        ...samplePackagePatch({ title: 'FPSA-1 fpsrc', name: 'fpsrc-bin', version: '1.0-2' }),
        change: { kind: 'package', manager: 'apt', source: 'fpsrc', version: '1.0-2' },
      });
      const rolloutId = await fleet!.startRollout(sampleRollout(patchId, { target: { hostIds: [HOST] } }));
      const done = await fleet!.waitForState(rolloutId, FINAL_APPLY_STATES, 120_000);
      expect(done.rollout.state, `${done.rollout.stateReason ?? ''}\n${fleet!.agentLogs().join('\n')}`).toBe(
        'succeeded',
      );
      expect(hostOf(done, HOST).packages?.map((p) => `${p.name} ${p.from} → ${p.to}`)).toEqual([
        'fpsrc-bin 1.0-1 → 1.0-2',
        'libfpsrc1 1.0-1 → 1.0-2+b1',
      ]);
      expect(await fpsrcInstalled()).toBe('fpsrc-bin ii 1.0-2\nlibfpsrc1 ii 1.0-2+b1\n');

      await fleet!.api.post(`/v1/rollouts/${rolloutId}/revert`);
      const reverted = await fleet!.waitForState(rolloutId, FINAL_REVERT_STATES, 120_000);
      expect(reverted.rollout.state, reverted.rollout.stateReason ?? '').toBe('reverted');
      expect(await fpsrcInstalled()).toBe('fpsrc-bin ii 1.0-1\nlibfpsrc1 ii 1.0-1\n');
      expect(await chroot!.runChecked(['dpkg', '--audit']), 'dpkg --audit').toBe('');
    });
  },
);
